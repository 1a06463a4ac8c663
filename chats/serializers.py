"""How a chat and a message look from outside: in API responses and in event payloads alike.

Both read domain entities (`messaging_domain.entities`), so the envelope on Kafka carries exactly what the
API returns.
"""

from rest_framework import serializers


class ChatSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    title = serializers.CharField(read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    last_seq = serializers.IntegerField(read_only=True)
    visibility = serializers.CharField(source="visibility.value", read_only=True)
    member_count = serializers.IntegerField(read_only=True)
    version = serializers.IntegerField(read_only=True)


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.CharField(source="role.value", read_only=True)
    joined_at = serializers.DateTimeField(read_only=True)
    last_read_seq = serializers.IntegerField(read_only=True)


class MembershipSerializer(serializers.Serializer):
    """The requesting user's own standing in a chat: the `membership` of a chat in API responses."""

    role = serializers.CharField(read_only=True)
    last_read_seq = serializers.IntegerField(read_only=True)
    unread = serializers.IntegerField(read_only=True)


class ChatForUserSerializer(ChatSerializer):
    """A chat in API responses: with the requesting user's `membership` (null if they are not a member).
    Event payloads and frames carry the chat without it: one payload goes to many users."""

    membership = MembershipSerializer(allow_null=True, read_only=True)


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    chat_id = serializers.UUIDField(read_only=True)
    seq = serializers.IntegerField(read_only=True)
    text = serializers.CharField(source="shown_text", read_only=True)  # "" once deleted
    author = serializers.CharField(source="author.username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    edited_at = serializers.DateTimeField(read_only=True, allow_null=True)
    deleted = serializers.BooleanField(read_only=True)
    version = serializers.IntegerField(read_only=True)


# A serializer instance deep-copies its declared fields when it is made; a read-only one keeps no state in
# `to_representation`, so the hot paths (each post renders its message twice: the event payload and the
# response) reuse one instance each instead of making a new one per call.
represent_chat = ChatSerializer().to_representation
represent_message = MessageSerializer().to_representation
represent_member = MemberSerializer().to_representation


def represent_chat_for_user(chat, role: str | None, last_read_seq: int | None) -> dict:
    """`ChatForUserSerializer`'s shape, from a domain chat and the user's role and read position."""
    data = represent_chat(chat)
    data["membership"] = None if role is None else {
        "role": role,
        "last_read_seq": last_read_seq,
        "unread": max(0, chat.last_seq - last_read_seq),
    }
    return data
