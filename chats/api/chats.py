"""Chats: list and search, create, read, delete."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.filters import SearchFilter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.adapters import chat_from_row, participant_of
from chats.api.inputs import StrictCharField, chat_row_or_404, parse_chat_id
from chats.api.pagination import ChatPagination
from chats.bootstrap import mediator
from chats.queries import chat_rows
from chats.serializers import ChatSerializer
from messaging_domain.commands import (
    CreateChatCommand,
    DeleteChatCommand,
)


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
        rows = SearchFilter().filter_queryset(request, chat_rows(), self)
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
