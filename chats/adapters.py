"""The domain's ports on the Django ORM: repositories and the unit of work (which writes the outbox).

Where a race is not covered by the chat's row lock (a title taken by two new chats, one Idempotency-Key used in
two chats at once), a unique index has the last word: the loser's INSERT raises IntegrityError, which becomes the
domain's refusal (ChatTitleTaken, IdempotencyKeyReused) and leaves the handler, and the unit of work rolls the whole
transaction back. Nothing else runs in that transaction after the failed INSERT, so the INSERT needs no savepoint of
its own; one would cost every keyed post two more statements (two more round trips on PostgreSQL).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from chats import models
from chats.pipeline.outbox_wakeup import announce_outbox_rows
from chats.pipeline.wire import envelope
from chats.runtime import logs
from messaging_domain.entities import Chat, Membership, Message
from messaging_domain.events import Event
from messaging_domain.exceptions import ChatTitleTaken, IdempotencyKeyReused
from messaging_domain.ports import (
    ChatRepository,
    KeyedEdit,
    MembershipRepository,
    MessageRepository,
    UnitOfWork,
    UserDirectory,
)
from messaging_domain.values import Participant, Role, Text, Title, Visibility


def participant_of(user: Any) -> Participant:
    return Participant(id=user.pk, username=user.get_username(), is_staff=user.is_staff)


def chat_from_row(row: models.Chat) -> Chat:
    return Chat(
        id=row.id,
        title=Title(row.title),
        owner=participant_of(row.owner),
        created_at=row.created_at,
        last_seq=row.last_seq,
        visibility=Visibility(row.visibility),
        member_count=row.member_count,
        version=row.version,
    )


def membership_from_row(row: models.Membership, user: Participant | None = None) -> Membership:
    """`user`: the member when the caller knows them, so that the row is read without a join."""
    return Membership(
        chat_id=row.chat_id,
        user=user or participant_of(row.user),
        role=Role(row.role),
        joined_at=row.joined_at,
        last_read_seq=row.last_read_seq,
        version=row.version,
    )


def message_from_row(row: models.Message, author: Participant | None = None) -> Message:
    """`author`: the author when the caller knows them, so that the row is read without a join."""
    return Message(
        id=row.id,
        chat_id=row.chat_id,
        seq=row.seq,
        text=None if row.deleted else Text(row.text),
        author=author or participant_of(row.author),
        created_at=row.created_at,
        idempotency_key=row.idempotency_key,
        version=row.version,
        created_version=row.created_version,
        edited_at=row.edited_at,
        deleted=row.deleted,
    )


class DjangoChatRepository(ChatRepository):
    def title_taken(self, title: Title) -> bool:
        return models.Chat.objects.filter(title_key=title.key).exists()

    def _add(self, chat: Chat) -> None:
        try:  # the loser of a race for a title gets the same answer as a sequential duplicate (module docstring)
            models.Chat.objects.create(
                id=chat.id,
                title=chat.title.value,
                title_key=chat.title.key,
                owner_id=chat.owner.id,
                created_at=chat.created_at,
                last_seq=chat.last_seq,
                visibility=chat.visibility.value,
                member_count=chat.member_count,
                version=chat.version,
            )
        except IntegrityError as error:
            raise ChatTitleTaken(f"A chat titled {chat.title.value!r} already exists.") from error

    def _get_for_update(self, chat_id: UUID) -> Chat | None:
        # The row lock serializes writers of one chat until commit: seq order is commit order.
        # of=("self",) keeps the owner's user row unlocked.
        # [:1] rather than .first(): no ORDER BY to compile, on the hottest query of a post.
        rows = models.Chat.objects.select_for_update(of=("self",)).select_related("owner").filter(pk=chat_id)[:1]
        return next((chat_from_row(row) for row in rows), None)

    def _get(self, chat_id: UUID) -> Chat | None:
        rows = models.Chat.objects.select_related("owner").filter(pk=chat_id)[:1]
        return next((chat_from_row(row) for row in rows), None)

    def save(self, chat: Chat) -> None:
        models.Chat.objects.filter(pk=chat.id).update(
            last_seq=chat.last_seq, member_count=chat.member_count, version=chat.version
        )

    def remove(self, chat: Chat) -> None:
        models.Chat.objects.filter(pk=chat.id).delete()


class DjangoMessageRepository(MessageRepository):
    def add(self, message: Message) -> None:
        row = models.Message(
            id=message.id,
            chat_id=message.chat_id,
            seq=message.seq,
            text=message.text.value,
            author_id=message.author.id,
            created_at=message.created_at,
            idempotency_key=message.idempotency_key,
            version=message.version,
            created_version=message.created_version,
        )
        try:
            row.save(force_insert=True)
        except IntegrityError as error:
            if message.idempotency_key is None:
                raise  # no key to race for: under the chat's lock this is a broken invariant, not a refusal
            # One key used on two chats at once: the unique index decides (module docstring).
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different message."
            ) from error

    def get_by_idempotency_key(self, author: Participant, key: str) -> Message | None:
        # Without a join or an ORDER BY: the author is known, and (author, key) is unique.
        rows = models.Message.objects.filter(author_id=author.id, idempotency_key=key)[:1]
        return next((message_from_row(row, author) for row in rows), None)

    def get(self, chat_id: UUID, seq: int) -> Message | None:
        rows = models.Message.objects.select_related("author").filter(chat_id=chat_id, seq=seq)[:1]
        return next((message_from_row(row) for row in rows), None)

    def save(self, message: Message) -> None:
        models.Message.objects.filter(pk=message.id).update(
            text=message.shown_text, edited_at=message.edited_at, deleted=message.deleted, version=message.version
        )

    def get_edit_by_idempotency_key(self, editor: Participant, key: str) -> KeyedEdit | None:
        row = models.MessageEditKey.objects.filter(editor_id=editor.id, key=key).first()
        return None if row is None else KeyedEdit(row.chat_id, row.seq, Text(row.text))

    def remember_edit(self, editor: Participant, key: str, edit: KeyedEdit) -> None:
        try:  # one key used on two chats at once: the unique index decides (module docstring)
            models.MessageEditKey.objects.create(
                editor_id=editor.id, key=key, chat_id=edit.chat_id, seq=edit.seq, text=edit.text.value
            )
        except IntegrityError as error:
            raise IdempotencyKeyReused("This Idempotency-Key was already used for a different edit.") from error


class DjangoMembershipRepository(MembershipRepository):
    @staticmethod
    def _rows(chat_id: UUID, user: Participant):
        # No join on the user: the caller knows who it asks about.
        return models.Membership.objects.filter(chat_id=chat_id, user_id=user.id)[:1]

    def get(self, chat_id: UUID, user: Participant) -> Membership | None:
        return next((membership_from_row(row, user) for row in self._rows(chat_id, user)), None)

    def get_for_update(self, chat_id: UUID, user: Participant) -> Membership | None:
        rows = self._rows(chat_id, user).select_for_update()
        return next((membership_from_row(row, user) for row in rows), None)

    def add(self, membership: Membership) -> None:
        # Under the chat's lock, so never a duplicate; the unique constraint is the last word if it were.
        models.Membership.objects.create(
            chat_id=membership.chat_id,
            user_id=membership.user.id,
            role=membership.role.value,
            joined_at=membership.joined_at,
            last_read_seq=membership.last_read_seq,
            version=membership.version,
        )
        self._record_change(membership, left=False)

    def remove(self, membership: Membership) -> None:
        models.Membership.objects.filter(chat_id=membership.chat_id, user_id=membership.user.id).delete()
        self._record_change(membership, left=True)

    @staticmethod
    def _record_change(membership: Membership, left: bool) -> None:
        """The member's latest change, for replays after a version (chats.models.MemberChange)."""
        models.MemberChange.objects.update_or_create(
            chat_id=membership.chat_id,
            user_id=membership.user.id,
            defaults={
                "username": membership.user.username,
                "role": membership.role.value,
                "joined_at": membership.joined_at,
                "last_read_seq": membership.last_read_seq,
                "version": membership.version,
                "left": left,
            },
        )

    def save_read_position(self, membership: Membership) -> None:
        models.Membership.objects.filter(chat_id=membership.chat_id, user_id=membership.user.id).update(
            last_read_seq=membership.last_read_seq
        )

    def user_ids(self, chat_id: UUID) -> tuple[int, ...]:
        return tuple(models.Membership.objects.filter(chat_id=chat_id).values_list("user_id", flat=True))


class DjangoUserDirectory(UserDirectory):
    def by_username(self, username: str, active_only: bool = True) -> Participant | None:
        # Usernames are unique in any case (migration 0004), so at most one matches.
        users = get_user_model().objects.filter(username__iexact=username)
        user = (users.filter(is_active=True) if active_only else users).first()
        return None if user is None else participant_of(user)


class DjangoUnitOfWork(UnitOfWork):
    """One `transaction.atomic` around the handler: rows and outbox rows commit together."""

    def __enter__(self) -> DjangoUnitOfWork:
        self.chats = DjangoChatRepository()
        self.messages = DjangoMessageRepository()
        self.memberships = DjangoMembershipRepository()
        self.users = DjangoUserDirectory()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._open = True
        return self

    def _commit(self, events: list[Event]) -> None:
        request_id = logs.request_id.get()  # the HTTP request's, if any: the logs follow it to the frames
        models.OutboxEvent.objects.bulk_create(
            models.OutboxEvent(
                event_id=event.event_id,
                event_type=event.event_type,
                chat_id=event.chat_id,
                envelope=envelope(event, request_id),
            )
            for event in events
        )
        if events:
            transaction.on_commit(announce_outbox_rows)  # wakes the relay once the rows are visible
        self._open = False
        self._atomic.__exit__(None, None, None)

    def rollback(self) -> None:
        if self._open:
            self._open = False
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)
