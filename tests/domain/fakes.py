"""In-memory adapters of the domain's ports, for the domain's unit tests only."""

from __future__ import annotations

import copy
from uuid import UUID

from messaging_domain.entities import Chat, Membership, Message
from messaging_domain.events import Event
from messaging_domain.exceptions import ChatTitleTaken
from messaging_domain.ports import (
    ChatRepository,
    KeyedEdit,
    MembershipRepository,
    MessageRepository,
    UnitOfWork,
    UserDirectory,
)
from messaging_domain.values import Participant, Title


class FakeDatabase:
    """What survives between units of work: committed chats, messages, memberships and outbox events, and
    the users (which the domain only reads)."""

    def __init__(self) -> None:
        self.chats: dict[UUID, Chat] = {}
        self.messages: dict[UUID, Message] = {}
        self.memberships: dict[tuple[UUID, int], Membership] = {}
        self.edit_keys: dict[tuple[int, str], KeyedEdit] = {}
        self.users: dict[str, Participant] = {}
        self.outbox: list[Event] = []


class FakeChatRepository(ChatRepository):
    def __init__(self, staged: FakeDatabase) -> None:
        super().__init__()
        self.staged = staged

    def title_taken(self, title: Title) -> bool:
        return any(chat.title.key == title.key for chat in self.staged.chats.values())

    def _add(self, chat: Chat) -> None:
        if self.title_taken(chat.title):
            raise ChatTitleTaken("taken")
        self.staged.chats[chat.id] = chat

    # A copy, as a row read from the database is: a change reaches the store only through save(), so a
    # handler that forgets to save is caught.
    def _get_for_update(self, chat_id: UUID) -> Chat | None:
        return copy.deepcopy(self.staged.chats.get(chat_id))

    def _get(self, chat_id: UUID) -> Chat | None:
        return copy.deepcopy(self.staged.chats.get(chat_id))

    def save(self, chat: Chat) -> None:
        self.staged.chats[chat.id] = chat

    def remove(self, chat: Chat) -> None:
        del self.staged.chats[chat.id]
        for message_id in [m.id for m in self.staged.messages.values() if m.chat_id == chat.id]:
            del self.staged.messages[message_id]
        for key in [key for key in self.staged.memberships if key[0] == chat.id]:
            del self.staged.memberships[key]


class FakeMessageRepository(MessageRepository):
    def __init__(self, staged: FakeDatabase) -> None:
        self.staged = staged

    def add(self, message: Message) -> None:
        self.staged.messages[message.id] = message

    def get(self, chat_id: UUID, seq: int) -> Message | None:
        return next((m for m in self.staged.messages.values() if m.chat_id == chat_id and m.seq == seq), None)

    def save(self, message: Message) -> None:
        self.staged.messages[message.id] = message

    def get_edit_by_idempotency_key(self, editor: Participant, key: str) -> KeyedEdit | None:
        return self.staged.edit_keys.get((editor.id, key))

    def remember_edit(self, editor: Participant, key: str, edit: KeyedEdit) -> None:
        self.staged.edit_keys[(editor.id, key)] = edit

    def get_by_idempotency_key(self, author: Participant, key: str) -> Message | None:
        for message in self.staged.messages.values():
            if message.author.id == author.id and message.idempotency_key == key:
                return message
        return None


class FakeMembershipRepository(MembershipRepository):
    def __init__(self, staged: FakeDatabase) -> None:
        self.staged = staged

    def get(self, chat_id: UUID, user: Participant) -> Membership | None:
        # a copy, as FakeChatRepository's: a moved read position is stored by save_read_position() only
        return copy.deepcopy(self.staged.memberships.get((chat_id, user.id)))

    def get_for_update(self, chat_id: UUID, user: Participant) -> Membership | None:
        return self.get(chat_id, user)

    def add(self, membership: Membership) -> None:
        key = (membership.chat_id, membership.user.id)
        assert key not in self.staged.memberships, "a second membership row: the unique constraint would refuse it"
        self.staged.memberships[key] = membership

    def remove(self, membership: Membership) -> None:
        del self.staged.memberships[(membership.chat_id, membership.user.id)]

    def save_read_position(self, membership: Membership) -> None:
        self.staged.memberships[(membership.chat_id, membership.user.id)] = membership

    def user_ids(self, chat_id: UUID) -> tuple[int, ...]:
        return tuple(user_id for (member_chat_id, user_id) in self.staged.memberships if member_chat_id == chat_id)


class FakeUserDirectory(UserDirectory):
    def __init__(self, staged: FakeDatabase) -> None:
        self.staged = staged

    def by_username(self, username: str, active_only: bool = True) -> Participant | None:
        # In any case, as the database's iexact compares (lower() on both sides): "strasse" does not find "straße".
        return next((user for name, user in self.staged.users.items() if name.lower() == username.lower()), None)


class FakeUnitOfWork(UnitOfWork):
    """Works on a copy of the database and swaps it in on commit, so an abandoned unit changes nothing."""

    def __init__(self, database: FakeDatabase) -> None:
        super().__init__()
        self.database = database
        self.committed = False

    def __enter__(self) -> FakeUnitOfWork:
        self.staged = copy.deepcopy(self.database)
        self.chats = FakeChatRepository(self.staged)
        self.messages = FakeMessageRepository(self.staged)
        self.memberships = FakeMembershipRepository(self.staged)
        self.users = FakeUserDirectory(self.staged)
        return self

    def _commit(self, events: list[Event]) -> None:
        # An outbox row is the event as it was at the commit: a copy, which no later unit of work (working on
        # a deep copy of the database, whose memberships an event may share) can change afterwards.
        self.staged.outbox.extend(copy.deepcopy(events))
        self.database.__dict__.update(self.staged.__dict__)
        self.committed = True

    def rollback(self) -> None:
        pass
