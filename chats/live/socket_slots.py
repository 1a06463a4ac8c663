"""Open websockets per user, counted in Redis so the cap holds across web processes, and owned by the
process that holds them, so a process that dies takes its sockets out of the count.

daphne cancels consumers on shutdown without calling `disconnect()`, and a SIGKILLed process calls
nothing: a plain counter per user would keep those sockets forever (a user locked out with 4429 after a
few restarts with tabs open). So each user's count is a hash, one field per web process, and each web
process holds a *lease*: a Redis key that expires after CHAT_WS_SOCKET_LEASE_SECONDS (30 by default) and
that the process renews three times per lease. Counting skips (and deletes) the fields of processes whose
lease has expired, so a dead process's sockets leave every count within CHAT_WS_SOCKET_LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
from django.conf import settings
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)
T = TypeVar("T")

COUNT_EXPIRES = 24 * 3600  # a user's hash outlives no process by long; an idle user's goes away
LEASE_PREFIX = "chat:ws-process:"
# What the channel layer, the socket counts and presence raise while Redis is away or restarting. RuntimeError
# too: just after a restart, channels-redis's receive task and a new subscription can both reconnect the layer's
# one pub/sub connection, and asyncio refuses the second reader ("readuntil() called while another coroutine is
# already waiting").
LAYER_ERRORS = (redis.RedisError, OSError, RuntimeError)
POOL_WAIT_SECONDS = 10  # how long a socket waits for one of the process's Redis connections before failing

# Count the sockets of live processes (dropping dead ones), then take one if under the cap. The lease keys
# are read by name inside the script: fine on one Redis, the deployment this service supports.
TAKE = """
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if redis.call('EXISTS', ARGV[3] .. fields[i]) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

GIVE_BACK = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
"""


_undoing: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks


async def finished_or_undone(operation: Awaitable[T], undo: Callable[[T], Awaitable[object]]) -> T:
    """Await `operation`; if the caller is cancelled meanwhile (a socket's admission ran out of time), let it
    finish anyway and then `undo` it, so that a socket that never opened leaves nothing counted in Redis."""
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(functools.partial(_undo_if_done, undo))
        raise


def _undo_if_done(undo: Callable[[T], Awaitable[object]], done: asyncio.Task) -> None:
    if not done.cancelled() and done.exception() is None:  # else it did nothing (or nothing known)
        undo_later(undo(done.result()))


def undo_later(undo: Awaitable[object]) -> None:
    """Run `undo` on its own: its caller is being cancelled, or failing, and cannot wait for it."""
    undoing = asyncio.ensure_future(undo)
    _undoing.add(undoing)
    undoing.add_done_callback(_undone)


def _undone(undoing: asyncio.Task) -> None:
    _undoing.discard(undoing)
    if not undoing.cancelled() and undoing.exception() is not None:
        logger.warning("could not undo what a refused socket took: %s", undoing.exception())


class ProcessLease:
    """This web process's claim to the sockets it counts: renewed while its event loop runs, expired soon
    after its death, and deleted at a clean exit, so that a restart frees its sockets at once."""

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex
        self._renewers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> task
        atexit.register(self.release)

    @property
    def key(self) -> str:
        return LEASE_PREFIX + self.process_id

    async def ensure(self, client: aioredis.Redis) -> None:
        """Hold the lease from now on (first call on an event loop sets it and starts renewing it)."""
        loop = asyncio.get_running_loop()
        task = self._renewers.get(loop)
        if task is None or task.done():
            await client.set(self.key, 1, ex=settings.CHAT_WS_SOCKET_LEASE_SECONDS)
            self._renewers[loop] = loop.create_task(self._renew(client))

    async def _renew(self, client: aioredis.Redis) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_WS_SOCKET_LEASE_SECONDS / 3)
            try:
                await client.set(self.key, 1, ex=settings.CHAT_WS_SOCKET_LEASE_SECONDS)
            except (redis.RedisError, OSError) as error:
                logger.warning("could not renew the socket lease %s: %s", self.key, error)

    def release(self) -> None:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).delete(self.key)
        except (redis.RedisError, OSError):
            pass  # it expires on its own


class SocketSlots:
    """At most CHAT_WS_MAX_SOCKETS_PER_USER open sockets per user, across web processes.

    One Redis client per event loop, shared by every consumer on it (and by presence): a connection per socket
    would double the sockets a web process holds. Its pool holds CHAT_WS_REDIS_CONNECTIONS connections.
    """

    def __init__(self, lease: ProcessLease | None = None) -> None:
        self.lease = lease or ProcessLease()
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def redis(self) -> aioredis.Redis:
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        if settings.REDIS_URL not in clients:
            # A pooled connection that Redis closed (it restarted) is retried once on a new one, instead of
            # failing the handshake it serves; redis-py retries only the errors listed here.
            # The pool is bounded and *waits* for a free connection: redis-py's default pool raises "Too many
            # connections" past 100, and a burst of closing sockets would then fail to give back what they hold.
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL, max_connections=settings.CHAT_WS_REDIS_CONNECTIONS, timeout=POOL_WAIT_SECONDS,
                retry=Retry(NoBackoff(), 1), retry_on_error=[ConnectionError, TimeoutError],
            )
            clients[settings.REDIS_URL] = aioredis.Redis(connection_pool=pool)
        return clients[settings.REDIS_URL]

    @staticmethod
    def key(user_id: int) -> str:
        return f"chat:ws-sockets:{user_id}"

    async def take(self, user_id: int) -> bool:
        """Take one of the user's slots if one is free; a take its caller gave up on is given back."""

        async def take() -> bool:
            client = self.redis()
            await self.lease.ensure(client)
            taken = await client.eval(
                TAKE, 1, self.key(user_id), self.lease.process_id, settings.CHAT_WS_MAX_SOCKETS_PER_USER,
                LEASE_PREFIX, COUNT_EXPIRES,
            )
            return bool(taken)

        async def give_back(taken: bool) -> None:
            if taken:
                await self.give_back(user_id)

        return await finished_or_undone(take(), give_back)

    async def give_back(self, user_id: int) -> None:
        await self.redis().eval(GIVE_BACK, 1, self.key(user_id), self.lease.process_id)

    async def count(self, user_id: int) -> int:
        """Sockets the user holds in live processes (for tests and operators)."""
        client = self.redis()
        counts = await client.hgetall(self.key(user_id))
        alive = [await client.exists(LEASE_PREFIX + field.decode()) for field in counts]
        return sum(int(value) for value, live in zip(counts.values(), alive) if live)
