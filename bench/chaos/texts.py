"""Message texts: short ones and maximum-size ones (4,096 characters), in ASCII, Cyrillic and emoji.

Every text is unique (it starts with its post's number, and an edit's with its number too) and already stripped, so the text the service
stores, relays and sends must equal it exactly. Emoji are single code points (no joiners, no variation
selectors): 4,096 of them are 4,096 characters for the service, 16 KB of UTF-8, and ~49 KB as JSON with
escapes.
"""

from __future__ import annotations

import random

MAX_CHARS = 4096

ASCII = "The quick brown fox jumps over the lazy dog; 0123456789 !?#&*()[]{}<>/\\|~'\" "
CYRILLIC = "Съешь же ещё этих мягких французских булок, да выпей чаю. Ёжик в тумане — щука, ЪЫЬ! "
EMOJI = "😀🎉👍🔥🚀💬🐍🌍🍕🎧🦊🌈🧪📦🛰🙂"
MIXED = ASCII + CYRILLIC + EMOJI

ALPHABETS = {"ascii": ASCII, "cyrillic": CYRILLIC, "emoji": EMOJI, "mixed": MIXED}


def _fill(alphabet: str, length: int, rng: random.Random) -> str:
    start = rng.randrange(len(alphabet))
    repeated = (alphabet * (length // len(alphabet) + 2))[start:start + length]
    return repeated


def make_text(number: int, rng: random.Random, max_size_share: float, edit: int = 0) -> tuple[str, str]:
    """(kind, text) for post `number` (or its `edit`-th edit): a maximum-size text with probability
    `max_size_share`."""
    alphabet_name = rng.choice(list(ALPHABETS))
    alphabet = ALPHABETS[alphabet_name]
    head = f"#{number} " if not edit else f"#{number} edit {edit}: "
    if rng.random() < max_size_share:
        kind = f"max-{alphabet_name}"
        body = _fill(alphabet, MAX_CHARS - len(head), rng)
    else:
        kind = f"short-{alphabet_name}"
        body = _fill(alphabet, rng.randint(1, 80), rng)
    text = head + body
    # Stripped, exact length: replace whitespace at the end with a letter of the alphabet.
    while text[-1].isspace():
        text = text[:-1] + "Ж"
    assert len(text) <= MAX_CHARS and text == text.strip(), (kind, len(text))
    return kind, text
