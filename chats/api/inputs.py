"""What the API's views share for reading input: strict string and integer fields, and a chat from the URL."""

from __future__ import annotations

import uuid

from rest_framework import serializers

from chats import models
from chats.queries import chat_row
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


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: DRF's IntegerField would take "5", 5.0 and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def parse_chat_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ChatNotFound.for_id(repr(raw)) from None


def chat_row_or_404(chat_id: uuid.UUID, user_id: int) -> models.Chat:
    """The chat, if this user may see it: a private chat does not exist for a non-member."""
    row = chat_row(chat_id, user_id)
    if row is None:
        raise ChatNotFound.for_id(chat_id)
    return row
