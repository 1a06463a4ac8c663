"""Who is online in a chat: users with at least one open socket to its stream, counted across web processes in
Redis, so `presence.joined` goes out when a user's first socket opens and `presence.left` when the last closes.

Like the per-user socket counts (chats.live.socket_slots), each chat's presence is a hash with one field per
(web process, user), and a field counts only while its process holds its lease: a SIGKILLed process's sockets
leave presence when its lease expires (CHAT_WS_SOCKET_LEASE_SECONDS). Someone must notice, though: every web
process sweeps the presence of the chats it serves every CHAT_WS_PRESENCE_SWEEP_SECONDS, and whoever drops a
dead process's fields announces the users that left with it, once (the sweep is one atomic script). A dead
process's sockets therefore leave presence within the lease plus one sweep (40 s by default).

A crowd is not told of each arrival: N users opening sockets to one chat would cost N²/2 `presence.joined`
frames (half a million for a thousand users, more than a web process sends in a minute). Past
CHAT_WS_PRESENCE_CROWD users online, joins and leaves go out as a fresh `presence` list instead, at most every
CHAT_WS_PRESENCE_REFRESH_SECONDS per web process that saw a change: a few frames per socket, however many come.

Ephemeral, like typing: over the channel layer only, never the database, the outbox or Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref

from channels.layers import get_channel_layer
from django.conf import settings

from chats.live.socket_slots import (
    LAYER_ERRORS,
    LEASE_PREFIX,
    SocketSlots,
    finished_or_undone,
    undo_later,
)
from chats.pipeline.wire import chat_group, render

logger = logging.getLogger(__name__)

EXPIRES = 24 * 3600

# Drop the fields of processes whose lease is gone; `online` are the users with a live field, `gone` those who
# had only dead ones. Fields are "<process id>|<username>" (usernames never contain "|").
PRUNE = """
local function prune(key, prefix)
  local fields = redis.call('HGETALL', key)
  local online, dead = {}, {}
  for i = 1, #fields, 2 do
    local sep = string.find(fields[i], '|', 1, true)
    local user = string.sub(fields[i], sep + 1)
    if redis.call('EXISTS', prefix .. string.sub(fields[i], 1, sep - 1)) == 1 then
      online[user] = (online[user] or 0) + tonumber(fields[i + 1])
    else
      redis.call('HDEL', key, fields[i])
      dead[user] = true
    end
  end
  local gone = {}
  for user, _ in pairs(dead) do
    if not online[user] then table.insert(gone, user) end
  end
  return online, gone
end
local function size(set)
  local count = 0
  for _ in pairs(set) do count = count + 1 end
  return count
end
local function names(set)
  local list = {}
  for user, _ in pairs(set) do table.insert(list, user) end
  return list
end
"""

ENTER = PRUNE + """
local online, gone = prune(KEYS[1], ARGV[3])
for i = #gone, 1, -1 do
  if gone[i] == ARGV[2] then table.remove(gone, i) end  -- back already: entering now
end
local first = online[ARGV[2]] == nil
redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
online[ARGV[2]] = 1
return {first and 1 or 0, names(online), gone}
"""

LEAVE = PRUNE + """
local field = ARGV[1] .. '|' .. ARGV[2]
if redis.call('HINCRBY', KEYS[1], field, -1) <= 0 then redis.call('HDEL', KEYS[1], field) end
local online, gone = prune(KEYS[1], ARGV[3])
local last = online[ARGV[2]] == nil
return {last and 1 or 0, gone, size(online)}
"""

SWEEP = PRUNE + """
local online, gone = prune(KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])  -- a chat with open sockets keeps its presence, however long
return gone
"""

# Which of these users have no socket to the chat in a live process, just before their `presence.left` goes
# out: one who came back since the prune that found them gone has announced `presence.joined` by now.
STILL_GONE = PRUNE + """
local online, gone = prune(KEYS[1], ARGV[1])
local still = {}
for i = 2, #ARGV do
  if not online[ARGV[i]] then table.insert(still, ARGV[i]) end
end
return {still, size(online)}
"""

ONLINE = PRUNE + """
local online, gone = prune(KEYS[1], ARGV[1])
return names(online)
"""


def _names(values: list) -> list[str]:
    return sorted(value.decode() if isinstance(value, bytes) else value for value in values)


class _Served:
    """What one event loop (a web process) serves: its sockets per chat, and the crowds it owes a `presence`."""

    def __init__(self) -> None:
        self.sockets: dict[uuid.UUID, int] = {}
        self.task: asyncio.Task | None = None
        self.crowds_changed: set[uuid.UUID] = set()
        self.refresher: asyncio.Task | None = None


class Presence:
    """Presence of chats, on the socket slots' Redis client and process lease."""

    def __init__(self, slots: SocketSlots) -> None:
        self.slots = slots
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> _Served

    @staticmethod
    def key(chat_id: uuid.UUID) -> str:
        return f"chat:presence:{chat_id}"

    async def enter(self, chat_id: uuid.UUID, username: str) -> tuple[bool, list[str]]:
        """Count one socket of `username` in; whether it is their first, and who is online now. A socket whose
        admission fails or gives up meanwhile is counted out again."""

        async def count_in() -> list:
            client = self.slots.redis()
            await self.slots.lease.ensure(client)
            counted = await client.eval(
                ENTER, 1, self.key(chat_id), self.slots.lease.process_id, username, LEASE_PREFIX, EXPIRES
            )
            self._serve(chat_id, +1)
            return counted

        async def count_out(_counted: list) -> None:
            await self.leave(chat_id, username)

        first, online, gone = await finished_or_undone(count_in(), count_out)
        try:
            await self.announce_left(chat_id, _names(gone))
        except BaseException:
            undo_later(self.leave(chat_id, username))
            raise
        return bool(first), _names(online)

    async def leave(self, chat_id: uuid.UUID, username: str) -> bool:
        """Count one socket of `username` out, announcing it if it was their last; whether it was."""
        self._serve(chat_id, -1)
        last, gone, online = await self.slots.redis().eval(
            LEAVE, 1, self.key(chat_id), self.slots.lease.process_id, username, LEASE_PREFIX
        )
        await self.announce_left(chat_id, _names(gone))
        if last:
            await self.announce(chat_id, username, "presence.left", online + 1)
        return bool(last)

    async def announce(self, chat_id: uuid.UUID, username: str, frame_type: str, online: int) -> None:
        """`presence.joined` or `presence.left` of `username` to the chat's other sockets, `online` users being
        online with them; in a crowd, a fresh `presence` list a little later instead."""
        if online > settings.CHAT_WS_PRESENCE_CROWD:
            self._refresh_soon(chat_id)
            return
        frame = {"type": frame_type, "chat_id": str(chat_id), "username": username}
        await send_to_chat(chat_id, render(frame), about=username)

    async def announce_left(self, chat_id: uuid.UUID, usernames: list[str]) -> None:
        """`presence.left` for the users a prune found gone with a dead process, unless they are back."""
        if not usernames:
            return
        still, online = await self.slots.redis().eval(STILL_GONE, 1, self.key(chat_id), LEASE_PREFIX, *usernames)
        for username in _names(still):
            await self.announce(chat_id, username, "presence.left", online + len(still))

    def _served(self) -> _Served:
        return self._loops.setdefault(asyncio.get_running_loop(), _Served())

    def _refresh_soon(self, chat_id: uuid.UUID) -> None:
        served = self._served()
        served.crowds_changed.add(chat_id)
        if served.refresher is None or served.refresher.done():
            served.refresher = asyncio.ensure_future(self._refresh(served))

    async def _refresh(self, served: _Served) -> None:
        """Every CHAT_WS_PRESENCE_REFRESH_SECONDS while crowds change: their `presence` lists, to all their sockets."""
        while served.crowds_changed:
            await asyncio.sleep(settings.CHAT_WS_PRESENCE_REFRESH_SECONDS)
            changed, served.crowds_changed = served.crowds_changed, set()
            for chat_id in changed:
                try:
                    online = await self.slots.redis().eval(ONLINE, 1, self.key(chat_id), LEASE_PREFIX)
                    frame = {"type": "presence", "chat_id": str(chat_id), "online": _names(online)}
                    await send_to_chat(chat_id, render(frame), about=None)
                except LAYER_ERRORS as error:
                    logger.warning("presence of chat %s not refreshed: %s", chat_id, error)

    def _serve(self, chat_id: uuid.UUID, change: int) -> None:
        """Count this process's sockets per chat; sweep those chats while there are any (one task per loop)."""
        served = self._served()
        served.sockets[chat_id] = served.sockets.get(chat_id, 0) + change
        if served.sockets[chat_id] <= 0:
            del served.sockets[chat_id]
        if served.sockets and (served.task is None or served.task.done()):
            served.task = asyncio.ensure_future(self._sweep(served))

    async def _sweep(self, served: _Served) -> None:
        while served.sockets:
            await asyncio.sleep(settings.CHAT_WS_PRESENCE_SWEEP_SECONDS)
            for chat_id in list(served.sockets):
                try:
                    gone = await self.slots.redis().eval(SWEEP, 1, self.key(chat_id), LEASE_PREFIX, EXPIRES)
                    await self.announce_left(chat_id, _names(gone))
                except LAYER_ERRORS as error:
                    logger.warning("presence sweep of chat %s failed: %s", chat_id, error)


async def send_to_chat(chat_id: uuid.UUID, frame: str, about: str | None) -> None:
    """A rendered frame to every socket of the chat but those of the user it is `about` (None: to all)."""
    await get_channel_layer().group_send(chat_group(chat_id), {"type": "chat.presence", "username": about, "frame": frame})



