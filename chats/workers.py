"""What the long-running management commands share: clean stop on SIGTERM/SIGINT and backoff."""

from __future__ import annotations

import os
import re
import signal
import threading
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection


class StopFlag:
    """Set by SIGTERM or SIGINT; the worker finishes its current step, then leaves its loop."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._event = threading.Event()
        for signum in signals:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early on a stop; True if stopping."""
        return self._event.wait(seconds)


class Backoff:
    """Exponential backoff between failed attempts: 0.5 s doubling up to `maximum`, reset on success."""

    def __init__(self, maximum: float = 30.0) -> None:
        self.maximum = maximum
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(self.maximum, max(0.5, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '7d' -> timedelta (argparse type: a ValueError becomes a usage error)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(text)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


parse_duration.__name__ = "duration (like 90s, 15m, 12h or 7d)"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


positive_float.__name__ = "positive number"


def default_web_processes() -> int:
    """WEB_CONCURRENCY if set; else one web process per core on PostgreSQL, and one on SQLite.

    SQLite takes one writer at a time, so on SQLite a second web process adds lock waits, not write
    throughput (`make bench`, ingest against the bare endpoint: 67-68 % with one process, 55-59 % with two).
    """
    if "WEB_CONCURRENCY" in os.environ:
        try:
            return positive_int(os.environ["WEB_CONCURRENCY"])
        except ValueError:
            raise ImproperlyConfigured(f"WEB_CONCURRENCY={os.environ['WEB_CONCURRENCY']!r}: give a whole number >= 1") from None
    return (os.cpu_count() or 1) if connection.vendor == "postgresql" else 1
