"""One Redis connection pool per process for Django's cache (throttle counters).

Under ASGI, Django creates its cache objects per request context, and each RedisCache builds its own
connection pool: every request opened a new TCP connection to Redis for its throttle check (a measurable
share of a web process's CPU in `make bench`). Django's RedisCache takes a `pool_class`; this one hands out one
shared pool per URL and options, so requests reuse connections. redis-py's pools are thread-safe and
reset themselves in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _pools: ClassVar[dict[tuple, redis.ConnectionPool]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        key = (url, tuple(sorted(options.items())))
        with cls._lock:
            if key not in cls._pools:
                cls._pools[key] = super().from_url(url, **options)
            return cls._pools[key]
