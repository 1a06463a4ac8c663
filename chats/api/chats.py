"""Chats: list and search, create, read, delete. A private chat exists only for its members."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.filters import SearchFilter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import models
from chats.adapters import chat_from_row, participant_of
from chats.api.inputs import StrictCharField, chat_row_or_404, parse_chat_id
from chats.api.pagination import ChatPagination
from chats.bootstrap import mediator
from chats.queries import chat_rows
from chats.serializers import ChatForUserSerializer, represent_chat_for_user
from messaging_domain.commands import (
    CreateChatCommand,
    DeleteChatCommand,
)
from messaging_domain.values import Role


def chat_for_user(row: models.Chat) -> dict[str, Any]:
    """A row of `chats.queries.chat_rows` (annotated with the user's membership) as the API shows it."""
    return represent_chat_for_user(chat_from_row(row), row.my_role, row.my_last_read_seq)


class ChatListCreateApi(APIView):
    search_fields = ["title"]
    pagination_class = ChatPagination

    class ChatInput(serializers.Serializer):
        title = StrictCharField()
        visibility = StrictCharField(required=False)  # the domain decides what is valid

    class ListParams(serializers.Serializer):
        member = serializers.ChoiceField(choices=["me"], required=False)

    @extend_schema(
        responses=ChatForUserSerializer(many=True),
        parameters=[
            OpenApiParameter("search", str, description="Case-insensitive part of the title."),
            OpenApiParameter("member", str, enum=["me"], description="Only the chats I am a member of."),
        ],
    )
    def get(self, request: Request) -> Response:
        params = self.ListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        rows = chat_rows(request.user.pk, members_only="member" in params.validated_data)
        rows = SearchFilter().filter_queryset(request, rows, self)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([chat_for_user(row) for row in page])

    @extend_schema(request=ChatInput, responses={201: ChatForUserSerializer})
    def post(self, request: Request) -> Response:
        data = self.ChatInput(data=request.data)
        data.is_valid(raise_exception=True)
        chat = mediator.handle_command(
            CreateChatCommand(
                title=data.validated_data["title"],
                owner=participant_of(request.user),
                visibility=data.validated_data.get("visibility", "public"),
            )
        )
        return Response(represent_chat_for_user(chat, Role.OWNER.value, 0), status=status.HTTP_201_CREATED)


class ChatDetailApi(APIView):
    @extend_schema(responses=ChatForUserSerializer)
    def get(self, request: Request, chat_id: str) -> Response:
        return Response(chat_for_user(chat_row_or_404(parse_chat_id(chat_id), request.user.pk)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, chat_id: str) -> Response:
        mediator.handle_command(
            DeleteChatCommand(chat_id=parse_chat_id(chat_id), requested_by=participant_of(request.user))
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
