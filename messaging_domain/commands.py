"""Commands: what a user asks for, in the imperative. Raw input; the handlers validate it."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from messaging_domain.values import Participant


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class CreateChatCommand(Command):
    title: str
    owner: Participant


@dataclass(frozen=True)
class CreateMessageCommand(Command):
    chat_id: UUID
    text: str
    author: Participant
    idempotency_key: str | None = None


@dataclass(frozen=True)
class DeleteChatCommand(Command):
    chat_id: UUID
    requested_by: Participant
