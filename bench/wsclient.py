"""Many websocket subscribers of one chat in one asyncio process, recording which seq arrived when.

A subscriber is what a chat client is: `ws/chats/{id}/?token=...`, reading every frame. Each frame's
receive time is taken on this process's monotonic clock, the same clock the poster stamps its POSTs with,
so latency = receive time - POST send time needs no clock sync. Frames are matched to posts by seq, which
also tells a lost frame (a seq that never came), a duplicate (one that came twice) and a reordering.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.stats import latency_summary

CONNECT_CONCURRENCY = 50  # handshakes in flight at once
CONNECT_TIMEOUT = 30.0  # per handshake


async def open_sockets(urls: list[str]) -> list[ClientConnection]:
    """An open websocket to each of `urls`; if any handshake fails, closes the others and raises."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str) -> ClientConnection:
        async with gate:
            return await websockets.connect(url, proxy=None, compression=None, ping_interval=None,
                                            open_timeout=CONNECT_TIMEOUT, close_timeout=5)

    results = await asyncio.gather(*(one(url) for url in urls), return_exceptions=True)
    sockets = [result for result in results if not isinstance(result, BaseException)]
    if len(sockets) < len(urls):
        await close_sockets(sockets)
        failures = Counter(type(result).__name__ for result in results if isinstance(result, BaseException))
        raise ConnectionError(f"opened {len(sockets)} of {len(urls)} websockets; failures: {dict(failures)}")
    return sockets


async def close_sockets(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


@dataclass
class Subscriber:
    ws: ClientConnection
    frames: list[tuple[int, float, bool]] = field(default_factory=list)  # (seq, received at, live)
    seqs: set[int] = field(default_factory=set)
    error_codes: list[str] = field(default_factory=list)
    close_code: int | None = None

    async def listen(self) -> None:
        try:
            async for raw in self.ws:
                received_at = time.monotonic()
                frame = json.loads(raw)
                if frame["type"] == "message.created":
                    seq = frame["message"]["seq"]
                    self.frames.append((seq, received_at, frame["event_id"] is not None))
                    self.seqs.add(seq)
                elif frame["type"] == "error":
                    self.error_codes.append(frame["code"])
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code


class Audience:
    """The subscribers of one chat, each listening in a task of its own."""

    def __init__(self, sockets: list[ClientConnection]) -> None:
        self.subscribers = [Subscriber(ws) for ws in sockets]
        self.tasks = [asyncio.create_task(subscriber.listen()) for subscriber in self.subscribers]

    @classmethod
    async def connect(cls, urls: list[str]) -> Audience:
        return cls(await open_sockets(urls))

    def reset(self) -> None:
        """Forget what arrived so far: the next run counts only its own frames."""
        for subscriber in self.subscribers:
            subscriber.frames, subscriber.seqs = [], set()

    async def wait_for(self, messages: int, idle: float, cap: float) -> str:
        """Until every subscriber has `messages` distinct seqs, nothing arrived for `idle` s, or `cap` s passed."""
        deadline = time.monotonic() + cap
        last_total, last_change = -1, time.monotonic()
        while True:
            total = sum(len(subscriber.seqs) for subscriber in self.subscribers)
            if total >= messages * len(self.subscribers):
                return "complete"
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > idle:
                return f"nothing arrived for {idle:g}s"
            if now > deadline:
                return f"time cap {cap:g}s"
            await asyncio.sleep(0.05)

    def deliveries(self, sent_at: dict[int, float]) -> dict:
        """What arrived for the posts `sent_at` (seq -> POST send time): latencies, losses, repeats."""
        frames = [(seq, at, live) for s in self.subscribers for seq, at, live in s.frames if seq in sent_at]
        latencies = sorted(at - sent_at[seq] for seq, at, _ in frames)
        expected = set(sent_at)
        first_sent = min(sent_at.values(), default=0.0)
        last_received = max((at for _, at, _ in frames), default=first_sent)
        return {
            "subscribers": len(self.subscribers),
            "messages": len(sent_at),
            "frames_expected": len(self.subscribers) * len(sent_at),
            "frames_received": len(frames),
            "lost": sum(len(expected - s.seqs) for s in self.subscribers),
            "duplicates": sum(len(s.frames) - len(s.seqs) for s in self.subscribers),
            "subscribers_out_of_order": sum(
                any(a[0] >= b[0] for a, b in zip(s.frames, s.frames[1:])) for s in self.subscribers
            ),
            "frames_from_database": sum(not live for _, _, live in frames),  # gap fills
            "error_frames": dict(Counter(code for s in self.subscribers for code in s.error_codes)),
            "closed": dict(Counter(s.close_code for s in self.subscribers if s.close_code is not None)),
            "delivered_per_s": len(frames) / (last_received - first_sent) if last_received > first_sent else None,
            "latency_ms": latency_summary(latencies),
        }

    async def close(self) -> None:
        await close_sockets([subscriber.ws for subscriber in self.subscribers])
        await asyncio.wait(self.tasks, timeout=10)

