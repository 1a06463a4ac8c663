"""Abstract ports. `chats/` implements them on the Django ORM; the domain's tests on dictionaries."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from uuid import UUID

from messaging_domain.entities import Chat, Membership, Message
from messaging_domain.events import Event
from messaging_domain.exceptions import ChatNotFound
from messaging_domain.values import Participant, Text, Title


class ChatRepository(abc.ABC):
    """Chats by id. Every chat it hands out is remembered, so the unit of work can collect its events."""

    def __init__(self) -> None:
        self.seen: list[Chat] = []

    def add(self, chat: Chat) -> None:
        self._add(chat)
        self.seen.append(chat)

    def get_for_update(self, chat_id: UUID) -> Chat:
        """The chat, held exclusively until the unit of work ends; `ChatNotFound` if there is none."""
        chat = self._get_for_update(chat_id)
        if chat is None:
            raise ChatNotFound.for_id(chat_id)
        self.seen.append(chat)
        return chat

    def get(self, chat_id: UUID) -> Chat:
        """The chat, unlocked, for a change that does not touch the chat row (a read position)."""
        chat = self._get(chat_id)
        if chat is None:
            raise ChatNotFound.for_id(chat_id)
        self.seen.append(chat)
        return chat

    @abc.abstractmethod
    def title_taken(self, title: Title) -> bool: ...

    @abc.abstractmethod
    def save(self, chat: Chat) -> None: ...

    @abc.abstractmethod
    def remove(self, chat: Chat) -> None: ...

    @abc.abstractmethod
    def _add(self, chat: Chat) -> None:
        """Store a new chat; raise `ChatTitleTaken` if another chat got the title first."""

    @abc.abstractmethod
    def _get_for_update(self, chat_id: UUID) -> Chat | None: ...

    @abc.abstractmethod
    def _get(self, chat_id: UUID) -> Chat | None: ...


@dataclass(frozen=True)
class KeyedEdit:
    """What an edit sent with an Idempotency-Key asked for, so that its repeat is answered, not applied."""

    chat_id: UUID
    seq: int
    text: Text


class MessageRepository(abc.ABC):
    """Messages by chat and seq. Changes to them are made under the chat's lock."""

    @abc.abstractmethod
    def add(self, message: Message) -> None: ...

    @abc.abstractmethod
    def get(self, chat_id: UUID, seq: int) -> Message | None: ...

    @abc.abstractmethod
    def save(self, message: Message) -> None:
        """Store an edited or deleted message: text, edited_at, deleted, version."""

    @abc.abstractmethod
    def get_by_idempotency_key(self, author: Participant, key: str) -> Message | None: ...

    @abc.abstractmethod
    def get_edit_by_idempotency_key(self, editor: Participant, key: str) -> KeyedEdit | None: ...

    @abc.abstractmethod
    def remember_edit(self, editor: Participant, key: str, edit: KeyedEdit) -> None: ...


class MembershipRepository(abc.ABC):
    """Who belongs to which chat. Changes to it are made under the chat's lock (see `Chat.admit`)."""

    @abc.abstractmethod
    def get(self, chat_id: UUID, user: Participant) -> Membership | None: ...

    @abc.abstractmethod
    def get_for_update(self, chat_id: UUID, user: Participant) -> Membership | None:
        """The membership, held exclusively until the unit of work ends (its read position moves)."""

    @abc.abstractmethod
    def add(self, membership: Membership) -> None: ...

    @abc.abstractmethod
    def remove(self, membership: Membership) -> None: ...

    @abc.abstractmethod
    def save_read_position(self, membership: Membership) -> None: ...

    @abc.abstractmethod
    def user_ids(self, chat_id: UUID) -> tuple[int, ...]: ...


class UserDirectory(abc.ABC):
    @abc.abstractmethod
    def by_username(self, username: str, active_only: bool = True) -> Participant | None:
        """The user with this username (in any case), or None; only an active one unless told otherwise
        (a deactivated member can still be removed, but not added)."""


class UnitOfWork(abc.ABC):
    """One atomic change: the aggregates and the events they recorded are stored together or not at all.

    `commit()` stores the events (the outbox) in the same transaction as the rows; once it has returned,
    `collect_new_events()` hands them to the mediator. Leaving the block without `commit()` rolls back.
    """

    chats: ChatRepository
    messages: MessageRepository
    memberships: MembershipRepository
    users: UserDirectory

    def __init__(self) -> None:
        self._committed_events: list[Event] = []

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.rollback()

    def commit(self) -> None:
        events = [event for chat in self.chats.seen for event in chat.events]
        self._commit(events)
        for chat in self.chats.seen:
            chat.events.clear()
        self._committed_events.extend(events)

    def collect_new_events(self) -> Iterator[Event]:
        while self._committed_events:
            yield self._committed_events.pop(0)

    @abc.abstractmethod
    def _commit(self, events: list[Event]) -> None:
        """Make the changes and the events durable, in one transaction."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Undo whatever was not committed; a no-op after `commit()`."""
