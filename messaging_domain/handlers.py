"""Command handlers: load through the unit of work, ask the aggregate, commit. Plain functions."""

from __future__ import annotations

from dataclasses import dataclass

from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
    DeleteMessageCommand,
    EditMessageCommand,
    MarkReadCommand,
    RemoveMemberCommand,
)
from messaging_domain.entities import Chat, Membership, Message, names_self
from messaging_domain.exceptions import (
    ChatTitleTaken,
    IdempotencyKeyReused,
    MemberNotFound,
    MessageNotFound,
    UserNotFound,
)
from messaging_domain.ports import KeyedEdit, UnitOfWork
from messaging_domain.values import Participant, Text, Title, Visibility


@dataclass(frozen=True)
class PostedMessage:
    message: Message
    created: bool  # False when an idempotency key replayed an earlier post


@dataclass(frozen=True)
class MessageChange:
    message: Message
    changed: bool  # False when there was nothing to do (the same text, a repeated key, deleted already)


@dataclass(frozen=True)
class MemberChange:
    chat: Chat
    membership: Membership
    changed: bool  # False when there was nothing to do (adding a member twice)


@dataclass(frozen=True)
class ReadPosition:
    chat: Chat
    membership: Membership

    @property
    def unread(self) -> int:
        return self.chat.unread(self.membership)


def create_chat(command: CreateChatCommand, uow: UnitOfWork) -> Chat:
    title = Title(command.title)
    visibility = Visibility.parse(command.visibility)
    with uow:
        if uow.chats.title_taken(title):
            raise ChatTitleTaken(f"A chat titled {title.value!r} already exists.")
        chat = Chat.create(title, command.owner, visibility)
        uow.chats.add(chat)
        uow.memberships.add(chat.owner_membership())
        uow.commit()
    return chat


def create_message(command: CreateMessageCommand, uow: UnitOfWork) -> PostedMessage:
    text = Text(command.text)
    with uow:
        # Lock the chat before looking up the key: two posts with one key then queue on the lock,
        # and the second finds the first's message instead of posting again.
        chat = uow.chats.get_for_update(command.chat_id)
        membership = uow.memberships.get(chat.id, command.author)
        chat.check_visible(membership)
        if command.idempotency_key is not None:
            earlier = uow.messages.get_by_idempotency_key(command.author, command.idempotency_key)
            if earlier is not None:
                # Once edited or deleted, the text it was posted with is gone: the chat is what can be checked.
                changed_since = earlier.version != earlier.created_version
                if earlier.chat_id != chat.id or (earlier.text != text and not changed_since):
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was already used for a different message."
                    )
                return PostedMessage(earlier, created=False)
        joined = chat.admit(command.author, membership)  # posting in a public chat makes the author a member
        message = chat.post_message(text, command.author, command.idempotency_key)
        if joined is not None:
            chat.read_own_message(joined, message)
            uow.memberships.add(joined)
        elif chat.read_own_message(membership, message):
            uow.memberships.save_read_position(membership)
        uow.messages.add(message)
        uow.chats.save(chat)
        uow.commit()
    return PostedMessage(message, created=True)


def _message(uow: UnitOfWork, chat: Chat, seq: int) -> Message:
    message = uow.messages.get(chat.id, seq)
    if message is None:
        raise MessageNotFound(f"Chat {chat.id} has no message {seq}.")
    return message


def edit_message(command: EditMessageCommand, uow: UnitOfWork) -> MessageChange:
    text = Text(command.text)
    with uow:
        # Under the chat's lock, like every change of the chat: an edit and a delete of one message queue, and
        # the second sees what the first did (an edit after a delete gets MessageDeleted).
        chat = uow.chats.get_for_update(command.chat_id)
        chat.check_visible(uow.memberships.get(chat.id, command.editor))
        key = command.idempotency_key
        if key is not None:
            earlier = uow.messages.get_edit_by_idempotency_key(command.editor, key)
            if earlier is not None:
                if earlier != KeyedEdit(chat.id, command.seq, text):
                    raise IdempotencyKeyReused("This Idempotency-Key was already used for a different edit.")
                return MessageChange(_message(uow, chat, command.seq), changed=False)
        edited = chat.edit_message(_message(uow, chat, command.seq), text, command.editor)
        if edited is None:
            return MessageChange(_message(uow, chat, command.seq), changed=False)
        uow.messages.save(edited)
        if key is not None:
            uow.messages.remember_edit(command.editor, key, KeyedEdit(chat.id, command.seq, text))
        uow.chats.save(chat)
        uow.commit()
    return MessageChange(edited, changed=True)


def delete_message(command: DeleteMessageCommand, uow: UnitOfWork) -> MessageChange:
    with uow:
        chat = uow.chats.get_for_update(command.chat_id)
        chat.check_visible(uow.memberships.get(chat.id, command.requested_by))
        message = _message(uow, chat, command.seq)
        deleted = chat.delete_message(message, command.requested_by)
        if deleted is None:
            return MessageChange(message, changed=False)
        uow.messages.save(deleted)
        uow.chats.save(chat)
        uow.commit()
    return MessageChange(deleted, changed=True)


def delete_chat(command: DeleteChatCommand, uow: UnitOfWork) -> None:
    with uow:
        chat = uow.chats.get_for_update(command.chat_id)
        requester = uow.memberships.get(chat.id, command.requested_by)
        member_ids = uow.memberships.user_ids(chat.id) if chat.visibility is Visibility.PRIVATE else ()
        chat.delete(command.requested_by, requester, member_ids, command.as_moderator)
        uow.chats.remove(chat)
        uow.commit()


def _user(uow: UnitOfWork, username: str, requested_by: Participant, active_only: bool = True) -> Participant | None:
    if names_self(username, requested_by):
        return requested_by
    return uow.users.by_username(username, active_only)


def add_member(command: AddMemberCommand, uow: UnitOfWork) -> MemberChange:
    with uow:
        chat = uow.chats.get_for_update(command.chat_id)
        requester = uow.memberships.get(chat.id, command.requested_by)
        existing_self = names_self(command.username, command.requested_by) and requester is not None
        if not existing_self:
            chat.check_may_add(command.username, command.requested_by, requester, command.as_moderator)
        user = _user(uow, command.username, command.requested_by)
        if user is None:
            raise UserNotFound(f"No active user is called {command.username!r}.")
        existing = uow.memberships.get(chat.id, user)
        added = chat.add_member(user, existing, command.requested_by, requester, command.as_moderator)
        if added is None:
            return MemberChange(chat, existing, changed=False)
        uow.memberships.add(added)
        uow.chats.save(chat)
        uow.commit()
    return MemberChange(chat, added, changed=True)


def remove_member(command: RemoveMemberCommand, uow: UnitOfWork) -> MemberChange:
    with uow:
        chat = uow.chats.get_for_update(command.chat_id)
        requester = uow.memberships.get(chat.id, command.requested_by)
        chat.check_may_remove(command.username, command.requested_by, requester, command.as_moderator)
        user = _user(uow, command.username, command.requested_by, active_only=False)
        if user is None:
            raise MemberNotFound(f"{command.username!r} is not a member of this chat.")
        membership = uow.memberships.get(chat.id, user)
        removed = chat.remove_member(user, membership, command.requested_by, requester, command.as_moderator)
        uow.memberships.remove(removed)
        uow.chats.save(chat)
        uow.commit()
    return MemberChange(chat, removed, changed=True)


def mark_read(command: MarkReadCommand, uow: UnitOfWork) -> ReadPosition:
    with uow:
        # The chat row is not locked: a read position does not change the chat, and readers must not queue
        # behind posters. last_seq read a moment early only clamps lower; the membership row is locked.
        chat = uow.chats.get(command.chat_id)
        membership = uow.memberships.get_for_update(chat.id, command.reader)
        before = None if membership is None else membership.last_read_seq
        chat.mark_read(membership, command.seq)
        if membership.last_read_seq != before:
            uow.memberships.save_read_position(membership)
        uow.commit()
    return ReadPosition(chat, membership)


COMMAND_HANDLERS = {
    CreateChatCommand: create_chat,
    CreateMessageCommand: create_message,
    EditMessageCommand: edit_message,
    DeleteMessageCommand: delete_message,
    DeleteChatCommand: delete_chat,
    AddMemberCommand: add_member,
    RemoveMemberCommand: remove_member,
    MarkReadCommand: mark_read,
}
