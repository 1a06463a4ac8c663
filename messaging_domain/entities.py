"""Entities. `Chat` is the aggregate root: messages are posted, edited and deleted and members admitted
through it, so it owns `last_seq`, `version`, `member_count` and the rules of who may see and change what.

`Chat.version` counts the changes to a chat's content: every message created, edited or deleted and every
member joined or left raises it by exactly one (the caller holds the chat's row lock), and the change carries
it. A client that has seen version V can ask for what changed after V; a missing version is a lost change.

A chat's members are many (thousands), so the aggregate is never loaded with all of them: each rule is given
the memberships it is about (the requester's, the target's), which the unit of work has loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

from messaging_domain.events import (
    ChatDeletedEvent,
    ChatReadEvent,
    Event,
    MemberJoinedEvent,
    MemberLeftEvent,
    MessageDeletedEvent,
    MessageEditedEvent,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
    utc_now,
)
from messaging_domain.exceptions import (
    ChatNotFound,
    InvalidSeq,
    MemberNotFound,
    MessageDeleted,
    NotAllowed,
    NotAMember,
    OwnerCannotLeave,
)
from messaging_domain.values import Participant, Role, Text, Title, Visibility


def names_self(username: str, user: Participant) -> bool:
    """Whether `username` is the user's own in any case: lower() as the database's unique index on
    lower(username) compares them (casefold() would also take "strasse" for "straße", another user)."""
    return username.lower() == user.username.lower()


@dataclass(frozen=True)
class Message:
    """A message as it is at one version: an edit or a deletion makes a new one (`dataclasses.replace`), so an
    event keeps the message it was about. A deleted message keeps its seq as a tombstone without text."""

    id: UUID
    chat_id: UUID
    seq: int
    text: Text | None  # None once deleted
    author: Participant
    created_at: datetime
    idempotency_key: str | None = None
    version: int = 0  # the chat's version at this message's latest change
    created_version: int = 0  # ... and at its creation: a client that has seen that version has seen it
    edited_at: datetime | None = None
    deleted: bool = False

    @property
    def shown_text(self) -> str:
        return "" if self.text is None else self.text.value


@dataclass
class Membership:
    """A user's place in a chat, and how far they have read it (a position that never moves back)."""

    chat_id: UUID
    user: Participant
    role: Role
    joined_at: datetime
    last_read_seq: int = 0
    version: int = 0  # the chat's version at the change that made it (joined), or, in member.left, ended it

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER

    def read_up_to(self, seq: int) -> bool:
        """Move the read position forward to `seq`; False if it was there already (it never moves back)."""
        if seq <= self.last_read_seq:
            return False
        self.last_read_seq = seq
        return True


@dataclass
class Chat:
    id: UUID
    title: Title
    owner: Participant
    created_at: datetime
    last_seq: int = 0
    visibility: Visibility = Visibility.PUBLIC
    member_count: int = 0
    version: int = 0
    events: list[Event] = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def create(cls, title: Title, owner: Participant, visibility: Visibility = Visibility.PUBLIC) -> Chat:
        """A new chat with its creator as its one member, the owner (see `owner_membership`)."""
        chat = cls(id=uuid4(), title=title, owner=owner, created_at=utc_now(), visibility=visibility, member_count=1)
        chat.events.append(NewChatCreatedEvent(chat=chat.snapshot()))
        return chat

    def owner_membership(self) -> Membership:
        return Membership(chat_id=self.id, user=self.owner, role=Role.OWNER, joined_at=self.created_at)

    # --- who may see and change what ---------------------------------------------------------------------

    def is_visible_to(self, membership: Membership | None) -> bool:
        return self.visibility is Visibility.PUBLIC or membership is not None

    def check_visible(self, membership: Membership | None, as_moderator: Participant | None = None) -> None:
        """A private chat does not exist for a non-member: the same error as for an unknown id.

        `as_moderator`: staff acting from the admin, where they moderate every chat, private ones included.
        """
        if not self.is_visible_to(membership) and not (as_moderator is not None and as_moderator.is_staff):
            raise ChatNotFound.for_id(self.id)

    def may_manage(self, user: Participant) -> bool:
        """The owner and staff add and remove members, and delete the chat."""
        return user.is_staff or user.id == self.owner.id

    # --- changes -----------------------------------------------------------------------------------------

    def post_message(self, text: Text, author: Participant, idempotency_key: str | None = None) -> Message:
        """Post as `author`, who must be a member already (`admit` first). Their read position is then theirs
        to move, with the message (`Membership.read_up_to`): nobody has an unread message of their own."""
        # The caller holds the chat exclusively (a row lock in the database), so seq has no gaps or repeats.
        self.last_seq += 1
        version = self._next_version()
        message = Message(
            id=uuid4(),
            chat_id=self.id,
            seq=self.last_seq,
            text=text,
            author=author,
            created_at=utc_now(),
            idempotency_key=idempotency_key,
            version=version,
            created_version=version,
        )
        self.events.append(NewMessageReceivedEvent(message=message))
        return message

    def edit_message(self, message: Message, text: Text, editor: Participant) -> Message | None:
        """The message with its new text (None if the text is what it was: nothing changes). Authors only."""
        if message.deleted:
            raise MessageDeleted("This message was deleted; it cannot be edited.")
        if editor.id != message.author.id:
            raise NotAllowed("Only the message's author may edit it.")
        if message.text == text:
            return None
        edited = dataclasses.replace(message, text=text, edited_at=utc_now(), version=self._next_version())
        self.events.append(MessageEditedEvent(message=edited))
        return edited

    def delete_message(self, message: Message, requested_by: Participant) -> Message | None:
        """The message as a tombstone (None if it was one already). Its author, the chat's owner or staff."""
        if not (requested_by.id == message.author.id or self.may_manage(requested_by)):
            raise NotAllowed("Only the message's author, the chat's owner or staff may delete it.")
        if message.deleted:
            return None
        deleted = dataclasses.replace(message, text=None, deleted=True, version=self._next_version())
        self.events.append(MessageDeletedEvent(message=deleted, deleted_by=requested_by.username))
        return deleted

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def read_own_message(self, membership: Membership, message: Message) -> bool:
        """Posting reads the chat up to the author's own message. Their other devices hear of it (`chat.read`)
        only when that passed messages they had not read: otherwise no unread count they show changes, and a
        post costs no second event."""
        passed_unread = membership.last_read_seq < message.seq - 1
        moved = membership.read_up_to(message.seq)
        if moved and passed_unread:
            self.events.append(ChatReadEvent(member=dataclasses.replace(membership), unread=self.unread(membership)))
        return moved

    def admit(self, user: Participant, existing: Membership | None) -> Membership | None:
        """Make `user` a member (None if they are one already). A newcomer has read what was there.

        The caller holds the chat exclusively, so two admissions of one user cannot both find none.
        """
        if existing is not None:
            return None
        membership = Membership(
            chat_id=self.id, user=user, role=Role.MEMBER, joined_at=utc_now(), last_read_seq=self.last_seq,
            version=self._next_version(),
        )
        self.member_count += 1
        self.events.append(MemberJoinedEvent(chat=self.snapshot(), member=dataclasses.replace(membership)))
        return membership

    def add_member(
        self,
        user: Participant,
        existing: Membership | None,
        requested_by: Participant,
        requester: Membership | None,
        as_moderator: bool = False,
    ) -> Membership | None:
        """Anyone joins a public chat themselves; the owner or staff add others, and anyone to a private one."""
        if existing is not None and user.id == requested_by.id:
            self.check_visible(requester, requested_by if as_moderator else None)
            return None  # asking to join a chat one is in: nothing to do, and nothing to refuse
        self.check_may_add(user.username, requested_by, requester, as_moderator)
        return self.admit(user, existing)

    def check_may_add(self, username: str, requested_by: Participant, requester: Membership | None,
                      as_moderator: bool = False) -> None:
        """Before the username is even looked up: whether it names a user is none of a refused caller's business."""
        self.check_visible(requester, requested_by if as_moderator else None)
        joining_themselves = names_self(username, requested_by) and self.visibility is Visibility.PUBLIC
        if not (joining_themselves or self.may_manage(requested_by)):
            raise NotAllowed("Only the chat's owner or staff may add members.")

    def check_may_remove(self, username: str, requested_by: Participant, requester: Membership | None,
                         as_moderator: bool = False) -> None:
        self.check_visible(requester, requested_by if as_moderator else None)
        if not names_self(username, requested_by) and not self.may_manage(requested_by):
            raise NotAllowed("Only the chat's owner or staff may remove members.")

    def remove_member(
        self,
        user: Participant,
        membership: Membership | None,
        requested_by: Participant,
        requester: Membership | None,
        as_moderator: bool = False,
    ) -> Membership:
        """Anyone leaves; the owner or staff remove others; nobody removes the owner."""
        self.check_may_remove(user.username, requested_by, requester, as_moderator)
        if membership is None:
            raise MemberNotFound(f"{user.username} is not a member of this chat.")
        if membership.is_owner:
            raise OwnerCannotLeave("The owner cannot leave the chat; delete it instead.")
        self.member_count -= 1
        left = dataclasses.replace(membership, version=self._next_version())
        self.events.append(MemberLeftEvent(chat=self.snapshot(), member=dataclasses.replace(left)))
        return left

    def mark_read(self, membership: Membership | None, seq: object) -> Membership:
        """Move the member's read position to `seq` (clamped to the last message); it never moves back."""
        self.check_visible(membership)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidSeq("seq must be a whole number >= 1.")
        if membership is None:
            raise NotAMember("Only members keep a read position; join the chat first.")
        if membership.read_up_to(min(seq, self.last_seq)):
            self.events.append(ChatReadEvent(member=dataclasses.replace(membership), unread=self.unread(membership)))
        return membership

    def unread(self, membership: Membership) -> int:
        return max(0, self.last_seq - membership.last_read_seq)

    def delete(self, requested_by: Participant, requester: Membership | None, member_ids: tuple[int, ...],
               as_moderator: bool = False) -> None:
        self.check_visible(requester, requested_by if as_moderator else None)
        if not self.may_manage(requested_by):
            raise NotAllowed("Only the chat's owner or staff may delete it.")
        self.events.append(
            ChatDeletedEvent(chat=self.snapshot(), deleted_by=requested_by.username, member_ids=member_ids)
        )

    def snapshot(self) -> Chat:
        """A copy frozen in time for an event, so later changes to this chat do not rewrite history."""
        return dataclasses.replace(self)
