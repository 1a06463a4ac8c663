"""A chat's messages: pages of history, posting and editing (idempotent with Idempotency-Key), deleting."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.adapters import message_from_row, participant_of
from chats.api.inputs import StrictCharField, chat_row_or_404, parse_chat_id
from chats.api.pagination import MessageSeqPagination
from chats.bootstrap import mediator
from chats.queries import message_rows
from chats.serializers import MessageSerializer, represent_message
from messaging_domain.commands import (
    CreateMessageCommand,
    DeleteMessageCommand,
    EditMessageCommand,
)
from messaging_domain.exceptions import MessageNotFound

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER,
    description="Repeat a post or an edit safely: same user + key = the same result, made once.",
)


class IdempotencyKey(serializers.Serializer):
    key = serializers.CharField(max_length=255, required=False, allow_null=True)


def idempotency_key(request: Request) -> str | None:
    header = IdempotencyKey(data={"key": request.headers.get("Idempotency-Key")})
    if not header.is_valid():
        raise serializers.ValidationError({"idempotency_key": "The Idempotency-Key header must be 1-255 characters."})
    return header.validated_data["key"] or None


def parse_seq(raw: str) -> int:
    """A message's seq from the URL: ASCII digits, 1 or more (anything else names no message)."""
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31):
        raise MessageNotFound(f"No message has the seq {raw!r}.")
    return int(raw)


class MessageListCreateApi(APIView):
    pagination_class = MessageSeqPagination

    class MessageInput(serializers.Serializer):
        text = StrictCharField()

    @extend_schema(responses=MessageSerializer(many=True))
    def get(self, request: Request, chat_id: str) -> Response:
        row = chat_row_or_404(parse_chat_id(chat_id), request.user.pk)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(message_rows(row), request, view=self)
        return paginator.get_paginated_response(
            MessageSerializer([message_from_row(message) for message in page], many=True).data
        )

    @extend_schema(
        request=MessageInput,
        responses={201: MessageSerializer, 200: MessageSerializer},
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request, chat_id: str) -> Response:
        chat_uuid = parse_chat_id(chat_id)
        data = self.MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        posted = mediator.handle_command(
            CreateMessageCommand(
                chat_id=chat_uuid,
                text=data.validated_data["text"],
                author=participant_of(request.user),
                idempotency_key=idempotency_key(request),
            )
        )
        return Response(
            represent_message(posted.message),
            status=status.HTTP_201_CREATED if posted.created else status.HTTP_200_OK,
        )


class MessageDetailApi(APIView):
    class EditInput(serializers.Serializer):
        text = StrictCharField()

    @extend_schema(request=EditInput, responses={200: MessageSerializer}, parameters=[IDEMPOTENCY_KEY])
    def patch(self, request: Request, chat_id: str, seq: str) -> Response:
        chat_uuid, message_seq = parse_chat_id(chat_id), parse_seq(seq)
        data = self.EditInput(data=request.data)
        data.is_valid(raise_exception=True)
        change = mediator.handle_command(
            EditMessageCommand(
                chat_id=chat_uuid,
                seq=message_seq,
                text=data.validated_data["text"],
                editor=participant_of(request.user),
                idempotency_key=idempotency_key(request),
            )
        )
        return Response(represent_message(change.message))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, chat_id: str, seq: str) -> Response:
        mediator.handle_command(
            DeleteMessageCommand(
                chat_id=parse_chat_id(chat_id), seq=parse_seq(seq), requested_by=participant_of(request.user)
            )
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
