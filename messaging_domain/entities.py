"""Entities. `Chat` is the aggregate root: every message is posted through it, so it owns `last_seq`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

from messaging_domain.events import (
    ChatDeletedEvent,
    Event,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
    utc_now,
)
from messaging_domain.exceptions import NotChatOwner
from messaging_domain.values import Participant, Text, Title


@dataclass(frozen=True)
class Message:
    """A posted message never changes, so it is frozen."""

    id: UUID
    chat_id: UUID
    seq: int
    text: Text
    author: Participant
    created_at: datetime
    idempotency_key: str | None = None


@dataclass
class Chat:
    id: UUID
    title: Title
    owner: Participant
    created_at: datetime
    last_seq: int = 0
    events: list[Event] = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def create(cls, title: Title, owner: Participant) -> Chat:
        chat = cls(id=uuid4(), title=title, owner=owner, created_at=utc_now())
        chat.events.append(NewChatCreatedEvent(chat=chat.snapshot()))
        return chat

    def post_message(self, text: Text, author: Participant, idempotency_key: str | None = None) -> Message:
        # The caller holds the chat exclusively (a row lock in the database), so seq has no gaps or repeats.
        self.last_seq += 1
        message = Message(
            id=uuid4(),
            chat_id=self.id,
            seq=self.last_seq,
            text=text,
            author=author,
            created_at=utc_now(),
            idempotency_key=idempotency_key,
        )
        self.events.append(NewMessageReceivedEvent(message=message))
        return message

    def can_be_deleted_by(self, user: Participant) -> bool:
        return user.is_staff or user.id == self.owner.id

    def delete(self, requested_by: Participant) -> None:
        if not self.can_be_deleted_by(requested_by):
            raise NotChatOwner("Only the chat's owner or staff may delete it.")
        self.events.append(ChatDeletedEvent(chat=self.snapshot(), deleted_by=requested_by.username))

    def snapshot(self) -> Chat:
        """A copy frozen in time for an event, so later changes to this chat do not rewrite history."""
        return dataclasses.replace(self)
