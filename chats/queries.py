"""Reads. They bypass the domain (nothing is decided) but map rows to the same entities and serializers,
so a message read here looks exactly like one from the API or from an event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

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


def chat_row(chat_id: UUID) -> models.Chat | None:
    return models.Chat.objects.select_related("owner").filter(pk=chat_id).first()


def chat_rows() -> QuerySet[models.Chat]:
    """Every chat with its owner, for the list (its order and filters are the view's)."""
    return models.Chat.objects.select_related("owner")


def message_rows(chat: models.Chat) -> QuerySet[models.Message]:
    """A chat's messages with their authors, for pages (ordered by the paginator)."""
    return chat.messages.select_related("author")


def outbox_state() -> dict[str, Any]:
    """Rows waiting for the relay, the age in seconds of the oldest (None if none), and rows parked: one query."""
    row = models.OutboxEvent.objects.filter(published_at__isnull=True).aggregate(
        pending=Count("id", filter=Q(failed_at__isnull=True)),
        oldest=Min("created_at", filter=Q(failed_at__isnull=True)),
        parked=Count("id", filter=Q(failed_at__isnull=False)),
    )
    oldest = row["oldest"]
    return {
        "pending": row["pending"],
        "oldest_pending_seconds": None if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds()),
        "parked": row["parked"],
    }
