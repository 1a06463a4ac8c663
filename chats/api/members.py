"""A chat's members, and the requesting member's read position."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.adapters import membership_from_row, participant_of
from chats.api.inputs import (
    StrictCharField,
    StrictIntegerField,
    chat_row_or_404,
    parse_chat_id,
)
from chats.api.pagination import MemberPagination
from chats.bootstrap import mediator
from chats.queries import member_rows
from chats.serializers import MemberSerializer, represent_member
from messaging_domain.commands import (
    AddMemberCommand,
    MarkReadCommand,
    RemoveMemberCommand,
)


class MemberListCreateApi(APIView):
    pagination_class = MemberPagination

    class MemberInput(serializers.Serializer):
        username = StrictCharField(required=False, max_length=150)

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request: Request, chat_id: str) -> Response:
        chat = chat_row_or_404(parse_chat_id(chat_id), request.user.pk)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(member_rows(chat), request, view=self)
        return paginator.get_paginated_response([represent_member(membership_from_row(row)) for row in page])

    @extend_schema(request=MemberInput, responses={201: MemberSerializer, 200: MemberSerializer})
    def post(self, request: Request, chat_id: str) -> Response:
        chat_uuid = parse_chat_id(chat_id)
        data = self.MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        change = mediator.handle_command(
            AddMemberCommand(
                chat_id=chat_uuid,
                username=data.validated_data.get("username") or request.user.get_username(),
                requested_by=participant_of(request.user),
            )
        )
        return Response(
            represent_member(change.membership),
            status=status.HTTP_201_CREATED if change.changed else status.HTTP_200_OK,
        )


class MemberDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, chat_id: str, username: str) -> Response:
        mediator.handle_command(
            RemoveMemberCommand(
                chat_id=parse_chat_id(chat_id), username=username, requested_by=participant_of(request.user)
            )
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReadPositionApi(APIView):
    class ReadInput(serializers.Serializer):
        seq = StrictIntegerField(min_value=1)

    class ReadOutput(serializers.Serializer):
        last_read_seq = serializers.IntegerField()
        unread = serializers.IntegerField()

    @extend_schema(request=ReadInput, responses=ReadOutput)
    def post(self, request: Request, chat_id: str) -> Response:
        chat_uuid = parse_chat_id(chat_id)
        data = self.ReadInput(data=request.data)
        data.is_valid(raise_exception=True)
        position = mediator.handle_command(
            MarkReadCommand(chat_id=chat_uuid, seq=data.validated_data["seq"], reader=participant_of(request.user))
        )
        return Response({"last_read_seq": position.membership.last_read_seq, "unread": position.unread})
