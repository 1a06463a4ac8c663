"""Errors the domain raises. Each carries a stable `code` that clients can branch on."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused by a rule of the domain."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTitle(DomainError):
    code = "invalid_title"


class InvalidText(DomainError):
    code = "invalid_text"


class ChatTitleTaken(DomainError):
    code = "chat_title_taken"


class ChatNotFound(DomainError):
    code = "chat_not_found"
    message_without_id = "No chat has this id."

    @classmethod
    def for_id(cls, chat_id: object) -> ChatNotFound:
        return cls(f"No chat has the id {chat_id}.")


class InvalidVisibility(DomainError):
    code = "invalid_visibility"


class InvalidSeq(DomainError):
    code = "invalid_seq"


class UserNotFound(DomainError):
    """A username that names no active user, given as input (so a 400, not a 404 of the URL)."""

    code = "user_not_found"


class MemberNotFound(DomainError):
    code = "member_not_found"


class NotAMember(DomainError):
    """The chat is visible (public) but the action needs membership, such as keeping a read position."""

    code = "not_a_member"


class OwnerCannotLeave(DomainError):
    code = "owner_cannot_leave"


class NotAllowed(DomainError):
    """The chat is visible to the user, but this change is its owner's (or staff's)."""

    code = "permission_denied"


class MessageNotFound(DomainError):
    code = "message_not_found"


class MessageDeleted(DomainError):
    """The message was deleted: it cannot be edited (an edit that lost a race with a delete gets this)."""

    code = "message_deleted"


class IdempotencyKeyReused(DomainError):
    """The same key was sent before with a different chat or text: replaying it would lie."""

    code = "idempotency_key_reused"


class CommandHandlersNotRegisteredException(LookupError):
    """A command reached the mediator with no handler: a wiring bug, never a user error."""


class EventHandlersNotRegisteredException(LookupError):
    """An event was published with no handler: a wiring bug, never a user error."""
