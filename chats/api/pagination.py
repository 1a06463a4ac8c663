"""Pages are `{"results": [...], "next": url or null}`.

Chats: DRF's cursor pagination, newest first. Messages: keyset pagination on `seq`, which is dense and
ordered within a chat, so `after_seq` / `before_seq` are also what a websocket client resumes from.
"""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def page_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["results", "next"],
        "properties": {
            "results": schema,
            "next": {"type": "string", "nullable": True, "format": "uri"},
        },
    }


class PageLimitParams(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)


def page_limit(params: serializers.Serializer) -> int:
    """The validated `?limit=`: a limit outside 1-200 is 400 `invalid_limit`, never quietly the default."""
    params.is_valid(raise_exception=True)
    return params.validated_data["limit"]


class ChatPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request) -> int:
        # DRF's own reading falls back to the default for a bad or zero limit, and clips one over the maximum.
        return page_limit(PageLimitParams(data=request.query_params))

    def decode_cursor(self, request):
        # DRF checks a cursor's encoding, not its position: a forged position would reach the query.
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and parse_datetime(cursor.position) is None:
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return page_schema(schema)


class MemberPagination(ChatPagination):
    """Members in the order they joined (the owner first), with the chats' cursor and limit rules."""

    ordering = ("joined_at", "id")


class MessagePageParams(PageLimitParams):
    after_seq = serializers.IntegerField(min_value=0, required=False)
    before_seq = serializers.IntegerField(min_value=1, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "after_seq" in attrs and "before_seq" in attrs:
            raise ValidationError("Give after_seq or before_seq, not both.", code="invalid_request")
        return attrs


class MessageSeqPagination(BasePagination):
    """`?after_seq=N` ascending (the default, from the start), `?before_seq=N` descending; `?limit=` <= 200."""

    def paginate_queryset(self, queryset, request, view=None):
        params = MessagePageParams(data=request.query_params)
        limit = page_limit(params)
        before_seq = params.validated_data.get("before_seq")
        if before_seq is not None:
            self.cursor_param = "before_seq"
            rows = list(queryset.filter(seq__lt=before_seq).order_by("-seq")[: limit + 1])
        else:
            self.cursor_param = "after_seq"
            after_seq = params.validated_data.get("after_seq", 0)
            rows = list(queryset.filter(seq__gt=after_seq).order_by("seq")[: limit + 1])
        self.next_link = None
        if len(rows) > limit:
            rows = rows[:limit]
            url = remove_query_param(request.build_absolute_uri(), "after_seq")
            url = remove_query_param(url, "before_seq")
            self.next_link = replace_query_param(url, self.cursor_param, rows[-1].seq)
        return rows

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({"results": data, "next": self.next_link})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return page_schema(schema)

    def get_schema_operation_parameters(self, view):
        return [
            {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "integer"}}
            for name, text in [
                ("after_seq", "Messages with seq greater than this, ascending (default 0)."),
                ("before_seq", "Messages with seq less than this, descending."),
                ("limit", f"Page size, 1-{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})."),
            ]
        ]
