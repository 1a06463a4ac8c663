"""Reads. They bypass the domain (nothing is decided) but map rows to the same entities and serializers,
so a message read here looks exactly like one from the API or from an event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from rest_framework.fields import DateTimeField

from chats import models
from chats.adapters import message_from_row
from chats.serializers import MessageSerializer, represent_message

_iso = DateTimeField().to_representation


@dataclass(frozen=True)
class ChatAccess:
    last_seq: int
    version: int
    private: bool
    member: bool

    @property
    def visible(self) -> bool:
        return self.member or not self.private


def chat_access(chat_id: UUID, user_id: int) -> ChatAccess | None:
    """What a websocket needs to admit a user to a chat's stream, in one query; None if there is no chat."""
    row = (
        models.Chat.objects.filter(pk=chat_id)
        .annotate(member=Exists(models.Membership.objects.filter(chat=OuterRef("pk"), user_id=user_id)))
        .values_list("last_seq", "version", "visibility", "member")
        .first()
    )
    return None if row is None else ChatAccess(last_seq=row[0], version=row[1], private=row[2] == "private", member=row[3])


def messages_after(chat_id: UUID, after_seq: int, up_to_seq: int, limit: int) -> list[dict[str, Any]]:
    """Messages with after_seq < seq <= up_to_seq, ascending, at most `limit` of them, as the API shows them."""
    rows = (
        models.Message.objects.select_related("author")
        .filter(chat_id=chat_id, seq__gt=after_seq, seq__lte=up_to_seq)
        .order_by("seq")[:limit]
    )
    return MessageSerializer([message_from_row(row) for row in rows], many=True).data


@dataclass(frozen=True)
class Change:
    """One message or membership as it is now, changed after some version: what a chat stream replays."""

    version: int
    message: dict[str, Any] | None = None  # as the API shows it
    created_version: int = 0
    member: dict[str, Any] | None = None
    left: bool = False


def changes_after(chat_id: UUID, after_version: int, limit: int) -> list[Change]:
    """The messages and memberships of a chat whose latest change is after `after_version`, in version order,
    at most `limit` of them (each at most once: a row holds its latest change)."""
    messages = [
        Change(version=row.version, message=represent_message(message_from_row(row)),
               created_version=row.created_version)
        for row in models.Message.objects.select_related("author")
        .filter(chat_id=chat_id, version__gt=after_version).order_by("version")[:limit]
    ]
    members = [
        Change(version=row.version, left=row.left, member={
            "username": row.username, "role": row.role, "joined_at": _iso(row.joined_at),
            "last_read_seq": row.last_read_seq,
        })
        for row in models.MemberChange.objects.filter(chat_id=chat_id, version__gt=after_version)
        .order_by("version")[:limit]
    ]
    return sorted(messages + members, key=lambda change: change.version)[:limit]


POSITIONS_PER_QUERY = 500


def chat_positions(chat_ids: list[UUID]) -> dict[UUID, tuple[int, int]]:
    """The last seq and version of each chat that exists, `POSITIONS_PER_QUERY` chats per query."""
    positions: dict[UUID, tuple[int, int]] = {}
    for start in range(0, len(chat_ids), POSITIONS_PER_QUERY):
        chunk = chat_ids[start:start + POSITIONS_PER_QUERY]
        positions.update(
            (chat_id, (last_seq, version))
            for chat_id, last_seq, version in models.Chat.objects.filter(pk__in=chunk).values_list(
                "id", "last_seq", "version")
        )
    return positions


def chat_rows(user_id: int, members_only: bool = False) -> QuerySet[models.Chat]:
    """The chats this user may see (public ones and those they belong to; with `members_only`, the latter),
    each with its owner and the user's `my_role` and `my_last_read_seq` (None if not a member).
    Order and search are the view's."""
    mine = models.Membership.objects.filter(chat=OuterRef("pk"), user_id=user_id)
    rows = models.Chat.objects.select_related("owner").annotate(
        my_role=Subquery(mine.values("role")[:1]),
        my_last_read_seq=Subquery(mine.values("last_read_seq")[:1]),
    )
    if members_only:
        return rows.filter(memberships__user_id=user_id)
    return rows.filter(Q(visibility="public") | Exists(mine))


def active_members(chat_ids: list[UUID], user_ids: list[int]) -> set[tuple[UUID, int]]:
    """Which of these (chat, user) pairs are memberships of an active user: one query for a web process's
    private-chat subscribers (a superset is read, then matched in Python)."""
    rows = models.Membership.objects.filter(
        chat_id__in=set(chat_ids), user_id__in=set(user_ids), user__is_active=True
    ).values_list("chat_id", "user_id")
    return set(rows)


def chat_row(chat_id: UUID, user_id: int) -> models.Chat | None:
    """The chat if this user may see it, annotated as in `chat_rows`."""
    return chat_rows(user_id).filter(pk=chat_id).first()


def member_rows(chat: models.Chat) -> QuerySet[models.Membership]:
    """A chat's members with their users, for pages (ordered by the paginator)."""
    return chat.memberships.select_related("user")


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
