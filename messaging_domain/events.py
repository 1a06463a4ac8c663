"""Domain events: facts, named in the past tense, each with its own id and time.

`event_type` is the name the outside world sees (the Kafka envelope and websocket frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID, uuid4

if TYPE_CHECKING:
    from messaging_domain.entities import Chat, Message


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, kw_only=True)
class Event:
    event_type: ClassVar[str]
    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime = field(default_factory=utc_now)

    @property
    def chat_id(self) -> UUID:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class NewChatCreatedEvent(Event):
    event_type: ClassVar[str] = "chat.created"
    chat: Chat

    @property
    def chat_id(self) -> UUID:
        return self.chat.id


@dataclass(frozen=True, kw_only=True)
class NewMessageReceivedEvent(Event):
    event_type: ClassVar[str] = "message.created"
    message: Message

    @property
    def chat_id(self) -> UUID:
        return self.message.chat_id


@dataclass(frozen=True, kw_only=True)
class ChatDeletedEvent(Event):
    event_type: ClassVar[str] = "chat.deleted"
    chat: Chat
    deleted_by: str

    @property
    def chat_id(self) -> UUID:
        return self.chat.id
