"""Domain events: facts, named in the past tense, each with its own id and time.

`event_type` is the name the outside world sees (the Kafka envelope and websocket frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID, uuid4

if TYPE_CHECKING:
    from messaging_domain.entities import Chat, Membership, Message


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

    @property
    def version(self) -> int | None:
        """The chat's version this change made (see `Chat.version`); None for what is not a change of the chat's
        content (a read position)."""
        return None


@dataclass(frozen=True, kw_only=True)
class ChatEvent(Event):
    """An event that carries the chat as the change left it: the chat's id and version are the event's."""

    chat: Chat

    @property
    def chat_id(self) -> UUID:
        return self.chat.id

    @property
    def version(self) -> int:
        return self.chat.version


@dataclass(frozen=True, kw_only=True)
class MessageEvent(Event):
    """An event about one message, as the change left it: the message knows its chat and the version it made."""

    message: Message

    @property
    def chat_id(self) -> UUID:
        return self.message.chat_id

    @property
    def version(self) -> int:
        return self.message.version


@dataclass(frozen=True, kw_only=True)
class MemberEvent(ChatEvent):
    """A member came or went: `member` says whose sockets it goes to, `chat` is as it is after (its
    member_count counts the member or not)."""

    member: Membership


@dataclass(frozen=True, kw_only=True)
class NewChatCreatedEvent(ChatEvent):
    event_type: ClassVar[str] = "chat.created"


@dataclass(frozen=True, kw_only=True)
class NewMessageReceivedEvent(MessageEvent):
    event_type: ClassVar[str] = "message.created"


@dataclass(frozen=True, kw_only=True)
class MessageEditedEvent(MessageEvent):
    """`message` as it is after the edit."""

    event_type: ClassVar[str] = "message.edited"


@dataclass(frozen=True, kw_only=True)
class MessageDeletedEvent(MessageEvent):
    """`message` is the tombstone."""

    event_type: ClassVar[str] = "message.deleted"
    deleted_by: str


@dataclass(frozen=True, kw_only=True)
class ChatDeletedEvent(ChatEvent):
    event_type: ClassVar[str] = "chat.deleted"
    deleted_by: str
    member_ids: tuple[int, ...] = ()  # who belonged to it, so a private chat leaves exactly their lobbies


@dataclass(frozen=True, kw_only=True)
class MemberJoinedEvent(MemberEvent):
    """`chat` as it is with the member in it (member_count counts them)."""

    event_type: ClassVar[str] = "member.joined"


@dataclass(frozen=True, kw_only=True)
class MemberLeftEvent(MemberEvent):
    """`chat` as it is without the member."""

    event_type: ClassVar[str] = "member.left"


@dataclass(frozen=True, kw_only=True)
class ChatReadEvent(Event):
    """A member's read position moved forward: their other devices show the same unread count."""

    event_type: ClassVar[str] = "chat.read"
    member: Membership  # with its new last_read_seq
    unread: int

    @property
    def chat_id(self) -> UUID:
        return self.member.chat_id


# Every event the domain raises: what the composition root subscribes its handlers to.
ALL_EVENTS: tuple[type[Event], ...] = (
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
    MessageEditedEvent,
    MessageDeletedEvent,
    ChatDeletedEvent,
    MemberJoinedEvent,
    MemberLeftEvent,
    ChatReadEvent,
)
