"""One error shape for the whole API: `{"error": {"code": ..., "message": ...}}`, never an HTML page.

DRF's own errors (validation, auth, throttling, parsing, 404) and the domain's errors pass through
`exception_handler`; errors raised before DRF is reached use the `handler*` views in `chatproject.urls`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from messaging_domain import exceptions as domain

DOMAIN_ERROR_STATUS: dict[type[domain.DomainError], int] = {
    domain.InvalidTitle: status.HTTP_400_BAD_REQUEST,
    domain.InvalidText: status.HTTP_400_BAD_REQUEST,
    domain.InvalidVisibility: status.HTTP_400_BAD_REQUEST,
    domain.InvalidSeq: status.HTTP_400_BAD_REQUEST,
    domain.ChatTitleTaken: status.HTTP_400_BAD_REQUEST,
    domain.UserNotFound: status.HTTP_400_BAD_REQUEST,
    domain.OwnerCannotLeave: status.HTTP_400_BAD_REQUEST,
    domain.ChatNotFound: status.HTTP_404_NOT_FOUND,
    domain.MemberNotFound: status.HTTP_404_NOT_FOUND,
    domain.NotAllowed: status.HTTP_403_FORBIDDEN,
    domain.NotAMember: status.HTTP_403_FORBIDDEN,
    domain.IdempotencyKeyReused: status.HTTP_409_CONFLICT,
    domain.MessageNotFound: status.HTTP_404_NOT_FOUND,
    domain.MessageDeleted: status.HTTP_409_CONFLICT,
}


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _own_code(detail: Any) -> str:
    """A code we chose (`invalid_credentials`), else `invalid_request` for DRF's generic ones (`invalid`, `null`)."""
    code = getattr(detail, "code", None) or ""
    return code if code.startswith("invalid_") else "invalid_request"


def _validation_error_body(detail: Any) -> dict[str, Any]:
    """`invalid_<field>` for the first field at fault (so `title` -> `invalid_title`), all fields listed."""
    if isinstance(detail, dict) and detail:
        field, problems = next(iter(detail.items()))
        first = problems[0] if isinstance(problems, list) and problems else problems
        if field == "non_field_errors":
            return error_body(_own_code(first), str(first), fields=detail)
        return error_body(f"invalid_{field}", f"{field}: {first}", fields=detail)
    first = detail[0] if isinstance(detail, list) and detail else detail
    return error_body(_own_code(first), str(first))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, domain.DomainError):
        return Response(error_body(exc.code, exc.message), status=DOMAIN_ERROR_STATUS[type(exc)])
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    # DRF's handler adds WWW-Authenticate / Retry-After headers and rolls back an atomic request.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: logged, then answered by handler500
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_error_body(exc.detail)
    else:
        response.data = error_body(str(exc.get_codes()), str(exc.detail))
    return response


def _json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return _json_error(413, "request_too_large", RequestTooLarge.default_detail)
    return _json_error(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(403, "permission_denied", "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(404, "not_found", f"Nothing is at {request.path}.")


def server_error(request: HttpRequest) -> JsonResponse:
    return _json_error(500, "server_error", "An unexpected error occurred; it has been logged.")
