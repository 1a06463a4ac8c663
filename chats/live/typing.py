"""Who may announce typing, and when: ephemeral, so it never reaches the database, the outbox or Kafka (a
typing notice is worthless a few seconds later, and replaying one after a reconnect would lie).

Kept in each web process's memory: one notice per user per chat every CHAT_WS_TYPING_INTERVAL_SECONDS, and at
most CHAT_WS_TYPING_PER_CHAT_PER_SECOND per chat per second, so that a hundred people typing at once in one
chat send its subscribers a handful of frames a second, not a hundred. Both limits hold per web process: a
user typing on two devices served by two processes may be announced twice as often.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings


class TypingGate:
    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._last_by_user: dict[tuple[uuid.UUID, int], float] = {}
        self._second_by_chat: dict[uuid.UUID, tuple[int, int]] = {}  # chat -> (second, notices in it)

    def admit(self, chat_id: uuid.UUID, user_id: int) -> bool:
        """Whether this typing notice goes out; a refused one is dropped silently."""
        now = self.clock()
        last = self._last_by_user.get((chat_id, user_id))
        if last is not None and now - last < settings.CHAT_WS_TYPING_INTERVAL_SECONDS:
            return False
        second = int(now)
        current, count = self._second_by_chat.get(chat_id, (second, 0))
        if current != second:
            count = 0
        if count >= settings.CHAT_WS_TYPING_PER_CHAT_PER_SECOND:
            return False
        self._second_by_chat[chat_id] = (second, count + 1)
        self._last_by_user[(chat_id, user_id)] = now
        if len(self._last_by_user) > 10_000:
            self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        interval = settings.CHAT_WS_TYPING_INTERVAL_SECONDS
        self._last_by_user = {key: at for key, at in self._last_by_user.items() if now - at < interval}
        self._second_by_chat = {chat: entry for chat, entry in self._second_by_chat.items() if entry[0] >= int(now)}
