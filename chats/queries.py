"""Reads. They bypass the domain (nothing is decided) but map rows to the same entities and serializers,
so a message read here looks exactly like one from the API or from an event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from chats import models
from chats.adapters import message_from_row
from chats.serializers import MessageSerializer


def chat_last_seq(chat_id: UUID) -> int | None:
    """The chat's current last seq, or None if there is no such chat."""
    return models.Chat.objects.filter(pk=chat_id).values_list("last_seq", flat=True).first()


def messages_after(chat_id: UUID, after_seq: int, up_to_seq: int, limit: int) -> list[dict[str, Any]]:
    """Messages with after_seq < seq <= up_to_seq, ascending, at most `limit` of them, as the API shows them."""
    rows = (
        models.Message.objects.select_related("author")
        .filter(chat_id=chat_id, seq__gt=after_seq, seq__lte=up_to_seq)
        .order_by("seq")[:limit]
    )
    return MessageSerializer([message_from_row(row) for row in rows], many=True).data


POSITIONS_PER_QUERY = 500


def chat_positions(chat_ids: list[UUID]) -> dict[UUID, int]:
    """The last seq of each chat that exists, `POSITIONS_PER_QUERY` chats per query."""
    positions: dict[UUID, int] = {}
    for start in range(0, len(chat_ids), POSITIONS_PER_QUERY):
        chunk = chat_ids[start:start + POSITIONS_PER_QUERY]
        positions.update(models.Chat.objects.filter(pk__in=chunk).values_list("id", "last_seq"))
    return positions
