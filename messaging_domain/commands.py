"""Commands: what a user asks for, in the imperative. Raw input; the handlers validate it.

`as_moderator` marks a request from the admin site, where staff moderate every chat (private ones included);
through the API, staff see only what members see.
"""

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
    visibility: object = "public"


@dataclass(frozen=True)
class CreateMessageCommand(Command):
    chat_id: UUID
    text: str
    author: Participant
    idempotency_key: str | None = None


@dataclass(frozen=True)
class EditMessageCommand(Command):
    chat_id: UUID
    seq: int
    text: str
    editor: Participant
    idempotency_key: str | None = None


@dataclass(frozen=True)
class DeleteMessageCommand(Command):
    chat_id: UUID
    seq: int
    requested_by: Participant


@dataclass(frozen=True)
class DeleteChatCommand(Command):
    chat_id: UUID
    requested_by: Participant
    as_moderator: bool = False


@dataclass(frozen=True)
class AddMemberCommand(Command):
    chat_id: UUID
    username: str
    requested_by: Participant
    as_moderator: bool = False


@dataclass(frozen=True)
class RemoveMemberCommand(Command):
    chat_id: UUID
    username: str
    requested_by: Participant
    as_moderator: bool = False


@dataclass(frozen=True)
class MarkReadCommand(Command):
    chat_id: UUID
    seq: object
    reader: Participant
