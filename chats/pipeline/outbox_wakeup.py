"""How the relay learns that outbox rows were committed, without polling the database tightly.

The writer PUBLISHes on the Redis channel `chat_outbox` once its transaction has committed (the unit of
work's on_commit hook), and the relay SUBSCRIBEs. The relay's poll interval stays as a ceiling: a lost
signal, or Redis being down, costs at most one interval, never a row. (PostgreSQL's LISTEN/NOTIFY was used
before on PostgreSQL; NOTIFY serializes every notifying commit on a database-wide lock, migration 0003.)
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import redis
from django.conf import settings

from chats.runtime.redis_pool import SharedConnectionPool

logger = logging.getLogger("chats.pipeline.relay")

CHANNEL = "chat_outbox"
SIGNAL_TIMEOUT = 0.25  # seconds one PUBLISH may take; the relay's poll covers a failure
QUIET_AFTER_FAILURE = 5.0  # seconds the announcer waits after Redis failed before it tries again


@functools.lru_cache(maxsize=4)
def _redis_at(url: str) -> redis.Redis:
    pool = SharedConnectionPool.from_url(url, socket_timeout=SIGNAL_TIMEOUT, socket_connect_timeout=SIGNAL_TIMEOUT)
    return redis.Redis(connection_pool=pool)


def _redis() -> redis.Redis:
    return _redis_at(settings.REDIS_URL)


class OutboxAnnouncer:
    """Tells a waiting relay that outbox rows were committed (run by `transaction.on_commit`).

    The committing request only sets a flag; one daemon thread per process does the PUBLISH. So a request
    never waits on Redis (under load every extra round trip is also a wait to get the GIL back), and
    commits that land while a PUBLISH is in flight share the next one.
    """

    def __init__(self) -> None:
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def __call__(self) -> None:
        if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._publish_forever, name="outbox-announcer", daemon=True)
                    self._thread.start()
        self._pending.set()

    def _publish_forever(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            try:
                _redis().publish(CHANNEL, b"")
            except redis.RedisError as error:
                logger.warning("could not wake the relay through Redis (%s); it finds the rows by polling", error)
                time.sleep(QUIET_AFTER_FAILURE)  # what is committed meanwhile is announced by the next PUBLISH


announce_outbox_rows = OutboxAnnouncer()


class OutboxWakeup:
    """Waits until there may be new rows: a Redis message from a writer, or the timeout.

    Subscribe, look, then wait: rows committed before the subscription are found by the look that follows
    it, rows committed after it by their signal."""

    def __init__(self) -> None:
        self._subscription: redis.client.PubSub | None = None
        self._redis_down = False

    def wait(self, timeout: float, stop) -> None:
        """Return when a writer may have committed rows. A call that (re)subscribes returns at once: a
        signal published before the subscription took effect is lost, so the caller looks again first."""
        try:
            if self._subscription is None:
                self._subscription = _redis().pubsub(ignore_subscribe_messages=True)
                self._subscription.subscribe(CHANNEL)
                if self._redis_down:
                    logger.info("Redis wake-ups are back")
                    self._redis_down = False
                return
            for step in _slices(timeout, stop):
                if self._subscription.get_message(timeout=step) is not None:
                    while self._subscription.get_message(timeout=0) is not None:
                        pass  # one wake-up for every announcement that came meanwhile
                    return
        except redis.RedisError as error:
            if not self._redis_down:
                logger.warning("Redis wake-ups unavailable (%s); polling every %gs until it is back", error, timeout)
                self._redis_down = True
            self._subscription = None  # subscribe again next time
            stop.sleep(timeout)


def _slices(timeout: float, stop):
    """Half-second slices of `timeout`, so SIGTERM is noticed while waiting."""
    remaining = timeout
    while remaining > 0 and not stop:
        step = min(remaining, 0.5)
        yield step
        remaining -= step
