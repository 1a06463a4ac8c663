"""Request limits: writes per user (per client address when anonymous), registrations per client address, and
failed logins per account and per address. Reads are not limited.

Counting is a fixed-window counter in the cache: one key per (limit, client, window), created and counted
atomically, on Redis in one round trip (SET NX, INCR in a MULTI), in the local-memory cache under its lock. So
concurrent requests never undercount, as DRF's `SimpleRateThrottle` does: it reads the client's history, then
writes it back, and requests in between are lost (~810 accepted against 600/minute). The price of a fixed
window is that a client can spend its whole allowance just before a window ends and again just after: at most
twice the rate over any one window. A sliding log (DRF's) or a token bucket would need a read-modify-write
(or a Lua script) per request; the limits here are abuse guards, and one INCR per request is what they cost.
Each key's windows are offset by a hash of the key, so clients do not all reset (and retry) in the same second.

Every limit keys anonymous clients by `client_ip`, which trusts X-Forwarded-For only from CHAT_TRUSTED_PROXIES.

The counters are an abuse guard, not a dependency: while their store (Redis) is unreachable, requests go
through uncounted and a warning is logged at most once a minute per process, instead of every request
failing with 500 (Django's RedisCache raises ConnectionError when Redis is away).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCacheClient
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from chats.api.addresses import client_ip

logger = logging.getLogger(__name__)

clock = time.time  # a module attribute, so that tests can hold the time still

# What the cache raises when its server is away: redis-py's errors, or a socket's.
STORE_ERRORS = (redis.exceptions.RedisError, OSError)

# --- counting ---------------------------------------------------------------------------------------


class RateLimitedWarning:
    """Logs a warning at most once per `interval` seconds, with the number of occurrences it held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held_back = 0

    def __call__(self, message: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self._held_back += 1
                return
            held_back, self._held_back, self._last = self._held_back, 0, now
        more = f" ({held_back} more since the last warning)" if held_back else ""
        logger.warning(message + "%s", *args, more)


store_down_warning = RateLimitedWarning(interval=60)


def _store_down(error: Exception) -> None:
    store_down_warning("Request limits are not enforced: their cache is unreachable (%s)", error)


@dataclass(frozen=True)
class Window:
    key: str  # the cache key of this window's counter
    seconds_left: float


def current_window(key: str, duration: int) -> Window:
    offset = zlib.crc32(key.encode()) % duration
    index, elapsed = divmod(clock() + offset, duration)
    return Window(f"{key}_{int(index)}", duration - elapsed)


def count(window: Window, duration: int) -> int:
    """Adds one to the window's counter and returns it.

    The key lives for two windows, so it cannot expire between its creation and the increment. On Redis both go
    in one round trip (SET NX with the timeout, then INCR, in one MULTI): Django's `add` and `incr` cost three
    (`incr` asks whether the key exists first), each a wait in the request's thread. Elsewhere (the local-memory
    cache) `add` then `incr`; a key that vanished in between (evicted, the cache cleared) is created again.
    """
    client = _redis_client(window.key)
    if client is not None:
        key = cache.make_and_validate_key(window.key)
        _, counted = client.pipeline(transaction=True).set(key, 0, ex=2 * duration, nx=True).incr(key).execute()
        return counted
    for _ in range(2):
        cache.add(window.key, 0, timeout=2 * duration)
        try:
            return cache.incr(window.key)
        except ValueError:
            continue
    return 1


def _redis_client(key: str) -> redis.Redis | None:
    """The Redis client Django's RedisCache would use for `key` (its `_cache` is private, so looked up with care);
    None for any other cache. Integers are stored as themselves there, so `cache.get` reads what INCR counted."""
    backend = getattr(cache, "_cache", None)
    get_client = getattr(backend, "get_client", None)
    return get_client(key, write=True) if get_client is not None and isinstance(backend, RedisCacheClient) else None


class FixedWindowRateThrottle(SimpleRateThrottle):
    """DRF's rate throttle (`scope`, THROTTLE_RATES, `wait()` for Retry-After) with atomic counting."""

    def get_ident(self, request) -> str:
        return client_ip(request)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.window = current_window(self.key, self.duration)
        try:
            return count(self.window, self.duration) <= self.num_requests
        except STORE_ERRORS as error:
            _store_down(error)
            return True

    def wait(self) -> float:
        return self.window.seconds_left


class WriteRateThrottle(FixedWindowRateThrottle):
    scope = "writes"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        user = request.user
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class RegisterRateThrottle(FixedWindowRateThrottle):
    """Registrations create users, so they cannot be limited per user: per client address."""

    scope = "register"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


# --- failed logins ----------------------------------------------------------------------------------


class LoginLocked(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(f"Too many failed logins; retry in {wait:.0f} s.")
        self.wait = wait


@dataclass(frozen=True)
class LoginAttempt:
    """A password check that has been counted against its account and its address (see `begin_login`)."""

    account: Window | None
    address: Window | None

    def succeeded(self) -> None:
        """The password was right: the account's failures are forgiven, and this was no failure of the address."""
        try:
            if self.account is not None:
                cache.delete(self.account.key)
            if self.address is not None:
                cache.decr(self.address.key)
        except ValueError:
            pass  # the window has gone: nothing to give back
        except STORE_ERRORS as error:
            _store_down(error)


def begin_login(username: str, ip: str) -> LoginAttempt:
    """Counts a password check against the account (any case) and the client address, before it happens.

    Raises LoginLocked when either has had its limit of failures in the current window
    (CHAT_LOGIN_ACCOUNT_FAILURES, CHAT_LOGIN_IP_FAILURES per CHAT_LOGIN_FAILURE_WINDOW_SECONDS): then the
    password is not checked at all, so the right one is refused too. Counting before checking, rather than
    after a failure, keeps the limit exact against guesses sent in parallel; a success gives the count back.
    """
    duration = settings.CHAT_LOGIN_FAILURE_WINDOW_SECONDS
    account_id = hashlib.sha256(username.lower().encode()).hexdigest()  # any length, any characters
    limits = [
        (f"login_account_{account_id}", settings.CHAT_LOGIN_ACCOUNT_FAILURES),
        (f"login_ip_{ip}", settings.CHAT_LOGIN_IP_FAILURES),
    ]
    windows = [current_window(key, duration) for key, _ in limits]
    try:
        counts = [count(window, duration) for window in windows]
    except STORE_ERRORS as error:
        _store_down(error)
        return LoginAttempt(None, None)
    waits = [window.seconds_left for window, n, (_, limit) in zip(windows, counts, limits) if n > limit]
    if waits:
        raise LoginLocked(max(waits))
    return LoginAttempt(*windows)
