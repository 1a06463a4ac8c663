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


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    chat_id = serializers.UUIDField(read_only=True)
    seq = serializers.IntegerField(read_only=True)
    text = serializers.CharField(read_only=True)
    author = serializers.CharField(source="author.username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


# A serializer instance deep-copies its declared fields when it is made; a read-only one keeps no state in
# `to_representation`, so the hot paths (each post renders its message twice: the event payload and the
# response) reuse one instance each instead of making a new one per call.
represent_chat = ChatSerializer().to_representation
represent_message = MessageSerializer().to_representation
