"""What a worker loop (relay, forwarder) is driven by: a stop flag set by SIGTERM/SIGINT, and backoff."""

from __future__ import annotations

import signal
import threading


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
