"""Value objects: a title or a text that exists is a valid one."""

from __future__ import annotations

from dataclasses import dataclass

from messaging_domain.exceptions import InvalidText, InvalidTitle

TITLE_MAX_LENGTH = 255
TEXT_MAX_LENGTH = 4096


@dataclass(frozen=True)
class Title:
    """A chat title: stripped, 1-255 characters, compared without regard to case."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidTitle("The title must be a string.")
        value = self.value.strip()
        if not value:
            raise InvalidTitle("The title must not be empty.")
        if len(value) > TITLE_MAX_LENGTH:
            raise InvalidTitle(f"The title must be at most {TITLE_MAX_LENGTH} characters.")
        object.__setattr__(self, "value", value)

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
        if not isinstance(self.value, str):
            raise InvalidText("The text must be a string.")
        value = self.value.strip()
        if not value:
            raise InvalidText("The text must not be empty.")
        if len(value) > TEXT_MAX_LENGTH:
            raise InvalidText(f"The text must be at most {TEXT_MAX_LENGTH} characters.")
        object.__setattr__(self, "value", value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Participant:
    """A user as the chat domain sees one: identity, display name and whether they moderate."""

    id: int
    username: str
    is_staff: bool = False
