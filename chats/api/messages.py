"""A chat's messages: pages of history, and posting (idempotent with Idempotency-Key)."""

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
)


class MessageListCreateApi(APIView):
    pagination_class = MessageSeqPagination

    class MessageInput(serializers.Serializer):
        text = StrictCharField()

    class IdempotencyKey(serializers.Serializer):
        key = serializers.CharField(max_length=255, required=False, allow_null=True)

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
