"""Value objects: a title, a text or a visibility that exists is a valid one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from messaging_domain.exceptions import (
    DomainError,
    InvalidText,
    InvalidTitle,
    InvalidVisibility,
)

TITLE_MAX_LENGTH = 255
TEXT_MAX_LENGTH = 4096


def _stripped(value: object, max_length: int, error: type[DomainError], what: str) -> str:
    """The value without surrounding whitespace, if it is a string of 1 to max_length characters then."""
    if not isinstance(value, str):
        raise error(f"The {what} must be a string.")
    value = value.strip()
    if not value:
        raise error(f"The {what} must not be empty.")
    if len(value) > max_length:
        raise error(f"The {what} must be at most {max_length} characters.")
    return value


@dataclass(frozen=True)
class Title:
    """A chat title: stripped, 1-255 characters, compared without regard to case."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _stripped(self.value, TITLE_MAX_LENGTH, InvalidTitle, "title"))

    @property
    def key(self) -> str:
        """The case-folded form that uniqueness is decided on ("Straße" and "STRASSE" collide)."""
        return self.value.casefold()

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Text:
    """A message text: stripped, 1-4096 characters."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _stripped(self.value, TEXT_MAX_LENGTH, InvalidText, "text"))

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Participant:
    """A user as the chat domain sees one: identity, display name and whether they moderate."""

    id: int
    username: str
    is_staff: bool = False


class Visibility(str, Enum):
    """Who may see a chat: everyone (public), or its members only (private)."""

    PUBLIC = "public"
    PRIVATE = "private"

    @classmethod
    def parse(cls, value: object) -> Visibility:
        if isinstance(value, str):
            for visibility in cls:
                if visibility.value == value:
                    return visibility
        raise InvalidVisibility('The visibility must be "public" or "private".')


class Role(str, Enum):
    """A member's standing in a chat: the owner manages its members, a member takes part."""

    OWNER = "owner"
    MEMBER = "member"
