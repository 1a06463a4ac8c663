"""HTTP entrypoints. Each write: validate the shape of the input, build a command, hand it to the mediator,
serialize the result. Domain errors become HTTP errors in one place (`chats.api.errors`)."""

from __future__ import annotations

import uuid

from django.contrib.auth import authenticate, get_user_model, logout
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, Min
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.filters import SearchFilter
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import models
from chats.adapters import chat_from_row, message_from_row, participant_of
from chats.api.errors import error_body
from chats.api.pagination import ChatPagination, MessageSeqPagination
from chats.api.throttling import LoginLocked, RegisterRateThrottle, WriteRateThrottle, begin_login, client_ip
from chats.bootstrap import mediator
from chats.serializers import ChatSerializer, MessageSerializer, represent_message
from messaging_domain.commands import (
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
)
from messaging_domain.exceptions import ChatNotFound


class StrictCharField(serializers.CharField):
    """A string and nothing else: DRF's CharField would turn 42 or true into "42" / "True".

    Emptiness and length are the domain's rules (Title, Text), so this field does not check them.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def parse_chat_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ChatNotFound(f"No chat has the id {raw!r}.") from None


def chat_row_or_404(chat_id: uuid.UUID) -> models.Chat:
    row = models.Chat.objects.select_related("owner").filter(pk=chat_id).first()
    if row is None:
        raise ChatNotFound(f"No chat has the id {chat_id}.")
    return row


USERNAME_TAKEN = "This username is taken."


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    # No authentication, so no session CSRF check: a browser that also holds a session cookie (the admin
    # is open in another tab) can still sign up and log in here.
    authentication_classes: list = []
    throttle_classes = [RegisterRateThrottle, WriteRateThrottle]

    class RegisterInput(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)

        def validate(self, attrs):
            User = get_user_model()
            if User.objects.filter(username__iexact=attrs["username"]).exists():
                raise serializers.ValidationError({"username": USERNAME_TAKEN})
            try:
                validate_password(attrs["password"], User(username=attrs["username"]))
            except DjangoValidationError as error:
                raise serializers.ValidationError({"password": list(error.messages)}) from None
            return attrs

    @extend_schema(
        request=RegisterInput,
        responses={201: inline_serializer("Registered", {"username": serializers.CharField(),
                                                         "token": serializers.CharField()})},
    )
    def post(self, request: Request) -> Response:
        data = self.RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_user(**data.validated_data)
                token = Token.objects.create(user=user)
        except IntegrityError:
            # Another registration took the name (in any case: migration 0004's index) after our check.
            raise serializers.ValidationError({"username": USERNAME_TAKEN}) from None
        return Response({"username": user.username, "token": token.key}, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []  # as RegisterApi

    class TokenInput(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False)

    @extend_schema(request=TokenInput, responses=inline_serializer("Token", {"token": serializers.CharField()}))
    def post(self, request: Request) -> Response:
        data = self.TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            attempt = begin_login(data.validated_data["username"], client_ip(request))
        except LoginLocked as locked:
            raise exceptions.Throttled(locked.wait, detail="Too many failed login attempts.") from None
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise serializers.ValidationError(
                "Unable to log in with these credentials.", code="invalid_credentials"
            )
        attempt.succeeded()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class LogoutApi(APIView):
    """Ends what authenticated this request: deletes the token, or ends the session.

    Either way the websockets opened with it are closed (4401), see chats.signals.
    """

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, Token):
            request.auth.delete()
        else:
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatListCreateApi(APIView):
    search_fields = ["title"]
    pagination_class = ChatPagination

    class ChatInput(serializers.Serializer):
        title = StrictCharField()

    @extend_schema(
        responses=ChatSerializer(many=True),
        parameters=[OpenApiParameter("search", str, description="Case-insensitive part of the title.")],
    )
    def get(self, request: Request) -> Response:
        rows = SearchFilter().filter_queryset(request, models.Chat.objects.select_related("owner"), self)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(
            ChatSerializer([chat_from_row(row) for row in page], many=True).data
        )

    @extend_schema(request=ChatInput, responses={201: ChatSerializer})
    def post(self, request: Request) -> Response:
        data = self.ChatInput(data=request.data)
        data.is_valid(raise_exception=True)
        chat = mediator.handle_command(
            CreateChatCommand(title=data.validated_data["title"], owner=participant_of(request.user))
        )
        return Response(ChatSerializer(chat).data, status=status.HTTP_201_CREATED)


class ChatDetailApi(APIView):
    @extend_schema(responses=ChatSerializer)
    def get(self, request: Request, chat_id: str) -> Response:
        row = chat_row_or_404(parse_chat_id(chat_id))
        return Response(ChatSerializer(chat_from_row(row)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, chat_id: str) -> Response:
        mediator.handle_command(
            DeleteChatCommand(chat_id=parse_chat_id(chat_id), requested_by=participant_of(request.user))
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageListCreateApi(APIView):
    pagination_class = MessageSeqPagination

    class MessageInput(serializers.Serializer):
        text = StrictCharField()

    class IdempotencyKey(serializers.Serializer):
        key = serializers.CharField(max_length=255, required=False, allow_null=True)

    @extend_schema(responses=MessageSerializer(many=True))
    def get(self, request: Request, chat_id: str) -> Response:
        row = chat_row_or_404(parse_chat_id(chat_id))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(row.messages.select_related("author"), request, view=self)
        return paginator.get_paginated_response(
            MessageSerializer([message_from_row(message) for message in page], many=True).data
        )

    @extend_schema(
        request=MessageInput,
        responses={201: MessageSerializer, 200: MessageSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="Repeat a post safely: same user + key = same message.")],
    )
    def post(self, request: Request, chat_id: str) -> Response:
        chat_uuid = parse_chat_id(chat_id)
        data = self.MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        header = self.IdempotencyKey(data={"key": request.headers.get("Idempotency-Key")})
        if not header.is_valid():
            raise serializers.ValidationError(
                {"idempotency_key": "The Idempotency-Key header must be 1-255 characters."}
            )
        posted = mediator.handle_command(
            CreateMessageCommand(
                chat_id=chat_uuid,
                text=data.validated_data["text"],
                author=participant_of(request.user),
                idempotency_key=header.validated_data["key"] or None,
            )
        )
        return Response(
            represent_message(posted.message),
            status=status.HTTP_201_CREATED if posted.created else status.HTTP_200_OK,
        )


class HealthApi(APIView):
    """For load balancers and operators: is the database up, and is the relay keeping up?"""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.CharField(),
                "db": serializers.CharField(),
                "outbox_pending": serializers.IntegerField(),
                "outbox_oldest_pending_seconds": serializers.FloatField(allow_null=True),
                "outbox_parked": serializers.IntegerField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        try:
            pending = models.OutboxEvent.objects.filter(models.OutboxEvent.PENDING).aggregate(
                count=Count("id"), oldest=Min("created_at")
            )
            parked = models.OutboxEvent.objects.filter(failed_at__isnull=False, published_at__isnull=True).count()
        except DatabaseError as error:
            body = error_body("unavailable", f"The database is unreachable: {error}")
            return Response(
                {**body, "status": "unavailable", "db": "error", "outbox_pending": None},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        oldest = pending["oldest"]
        return Response(
            {
                "status": "ok",
                "db": "ok",
                "outbox_pending": pending["count"],
                "outbox_oldest_pending_seconds": None if oldest is None else (timezone.now() - oldest).total_seconds(),
                "outbox_parked": parked,
            }
        )
