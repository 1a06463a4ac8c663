"""Command handlers: load through the unit of work, ask the aggregate, commit. Plain functions."""

from __future__ import annotations

from dataclasses import dataclass

from messaging_domain.commands import (
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
)
from messaging_domain.entities import Chat, Message
from messaging_domain.exceptions import ChatTitleTaken, IdempotencyKeyReused
from messaging_domain.ports import UnitOfWork
from messaging_domain.values import Text, Title


@dataclass(frozen=True)
class PostedMessage:
    message: Message
    created: bool  # False when an idempotency key replayed an earlier post


def create_chat(command: CreateChatCommand, uow: UnitOfWork) -> Chat:
    title = Title(command.title)
    with uow:
        if uow.chats.title_taken(title):
            raise ChatTitleTaken(f"A chat titled {title.value!r} already exists.")
        chat = Chat.create(title, command.owner)
        uow.chats.add(chat)
        uow.commit()
    return chat


def create_message(command: CreateMessageCommand, uow: UnitOfWork) -> PostedMessage:
    text = Text(command.text)
    with uow:
        # Lock the chat before looking up the key: two posts with one key then queue on the lock,
        # and the second finds the first's message instead of posting again.
        chat = uow.chats.get_for_update(command.chat_id)
        if command.idempotency_key is not None:
            earlier = uow.messages.get_by_idempotency_key(command.author, command.idempotency_key)
            if earlier is not None:
                if earlier.chat_id != chat.id or earlier.text != text:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was already used for a different message."
                    )
                return PostedMessage(earlier, created=False)
        message = chat.post_message(text, command.author, command.idempotency_key)
        uow.messages.add(message)
        uow.chats.save(chat)
        uow.commit()
    return PostedMessage(message, created=True)


def delete_chat(command: DeleteChatCommand, uow: UnitOfWork) -> None:
    with uow:
        chat = uow.chats.get_for_update(command.chat_id)
        chat.delete(requested_by=command.requested_by)
        uow.chats.remove(chat)
        uow.commit()


COMMAND_HANDLERS = {
    CreateChatCommand: create_chat,
    CreateMessageCommand: create_message,
    DeleteChatCommand: delete_chat,
}
