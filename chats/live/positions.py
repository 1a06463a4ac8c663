"""A subscriber learns its chat's latest position (last seq and version) at least every
CHAT_WS_POSITION_CHECK_SECONDS, so a frame the channel layer lost is filled from the database even when no
later frame arrives to reveal the gap.

The pub/sub channel layer is at most once: a message published while Redis restarts, or while a web
process resubscribes, is gone, and channels-redis 4.3 reports no reconnect (its `on_reconnect` is never
called). A gap is also found by the next live frame (chats.live.consumers), but the last message of a quiet
chat has no next frame. So each web process, once per interval, reads the position of every chat it has
subscribers for (one query for all of them) and tells a subscriber to catch up when it is still behind
a position read one interval earlier: a frame in flight gets a whole interval to arrive live first. A lost
frame is therefore delivered at most two intervals after its commit. A chat gone at two checks in a row
was deleted and its `chat.deleted` frame lost: its subscribers are closed as if it had arrived.

The same check keeps private chats private when a `member.left` frame is lost: the subscribers of private
chats whose user is no longer an active member (removed, left, account deactivated) are closed (4403), in
one more query for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from typing import NamedTuple, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from chats.queries import active_members, chat_positions

logger = logging.getLogger("chats.live.positions")

class ChatPosition(NamedTuple):
    last_seq: int
    version: int


GONE = None  # the chat was missing at a check


class Subscriber(Protocol):
    user_id: int
    private: bool

    def is_behind(self, position: ChatPosition) -> bool: ...

    async def catch_up(self, position: ChatPosition | None) -> None:
        """Send what is missing up to `position`; None: the chat is gone."""

    async def removed(self) -> None:
        """The user is no longer a member of this private chat."""


class _LoopPositions:
    """The chats watched on one event loop (one per web process; the tests start several)."""

    def __init__(self) -> None:
        self.subscribers: dict[uuid.UUID, weakref.WeakSet[Subscriber]] = {}
        self.seen: dict[uuid.UUID, ChatPosition | None] = {}
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while self.subscribers:
            await asyncio.sleep(settings.CHAT_WS_POSITION_CHECK_SECONDS)
            chats = list(self.subscribers)
            private = [
                (chat_id, subscriber)
                for chat_id, subscribers in self.subscribers.items()
                for subscriber in list(subscribers)
                if subscriber.private
            ]
            try:
                now = await database_sync_to_async(chat_positions)(chats)
                members = await database_sync_to_async(active_members)(
                    [chat_id for chat_id, _ in private], [subscriber.user_id for _, subscriber in private]
                ) if private else set()
            except DatabaseError as error:
                logger.warning("position check of %d chats failed: %s", len(chats), error)
                continue
            for chat_id, subscriber in private:
                if (chat_id, subscriber.user_id) not in members:
                    asyncio.ensure_future(subscriber.removed())
            for chat_id in chats:
                checked_before = chat_id in self.seen
                before = self.seen.get(chat_id)
                current = now.get(chat_id, GONE)
                self.seen[chat_id] = None if current is GONE else ChatPosition(*current)
                if not checked_before:
                    continue
                if before is GONE and current is GONE:  # gone at two checks: deleted, its frame lost
                    targets = [(subscriber, None) for subscriber in list(self.subscribers.get(chat_id, ()))]
                elif before is GONE:
                    continue
                else:
                    targets = [(s, before) for s in list(self.subscribers.get(chat_id, ())) if s.is_behind(before)]
                for subscriber, target in targets:
                    asyncio.ensure_future(subscriber.catch_up(target))
            self.seen = {chat_id: seen for chat_id, seen in self.seen.items() if chat_id in self.subscribers}


class ChatPositions:
    """Registry of subscribers by chat, checked by one task per event loop while anyone is subscribed."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _here(self) -> _LoopPositions:
        loop = asyncio.get_running_loop()
        if loop not in self._loops:
            self._loops[loop] = _LoopPositions()
        return self._loops[loop]

    def watch(self, chat_id: uuid.UUID, subscriber: Subscriber) -> None:
        here = self._here()
        here.subscribers.setdefault(chat_id, weakref.WeakSet()).add(subscriber)
        if here.task is None or here.task.done():
            here.task = asyncio.ensure_future(here.run())

    def unwatch(self, chat_id: uuid.UUID, subscriber: Subscriber) -> None:
        here = self._here()
        subscribers = here.subscribers.get(chat_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del here.subscribers[chat_id]
