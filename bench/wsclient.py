"""Many websocket subscribers of one chat in one asyncio process, recording which seq arrived when.

A subscriber is what a chat client is: `ws/chats/{id}/?token=...`, reading every frame. Each frame's
receive time is taken on this process's monotonic clock, the same clock the poster stamps its POSTs with,
so latency = receive time - POST send time needs no clock sync. Frames are matched to posts by seq, which
also tells a lost frame (a seq that never came), a duplicate (one that came twice) and a reordering.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

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
class Received:
    """What one subscriber received: enough to count latencies, losses and repeats (also sent between processes)."""

    frames: list[tuple[int, float, bool]] = field(default_factory=list)  # (seq, received at, live)
    seqs: set[int] = field(default_factory=set)
    error_codes: list[str] = field(default_factory=list)
    close_code: int | None = None
    created_at: dict[int, str] = field(default_factory=dict)  # seq -> the message's created_at, as the frame says
    typing: int = 0  # typing frames received (others typing in the chat)
    typing_sent: int = 0  # {"type": "typing"} frames this subscriber sent

    def to_json(self) -> dict:
        return {"frames": self.frames, "error_codes": self.error_codes, "close_code": self.close_code,
                "created_at": self.created_at, "typing": self.typing, "typing_sent": self.typing_sent}

    @classmethod
    def from_json(cls, data: dict) -> Received:
        frames = [tuple(frame) for frame in data["frames"]]
        return cls(frames, {seq for seq, _, _ in frames}, data["error_codes"], data["close_code"],
                   {int(seq): at for seq, at in data["created_at"].items()}, data.get("typing", 0),
                   data.get("typing_sent", 0))


@dataclass
class Subscriber(Received):
    ws: ClientConnection | None = None

    async def listen(self) -> None:
        try:
            async for raw in self.ws:
                received_at = time.monotonic()
                frame = json.loads(raw)
                for each in frame["frames"] if frame["type"] == "batch" else (frame,):  # ?batch=1
                    self.take(each, received_at)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def take(self, frame: dict, received_at: float) -> None:
        if frame["type"] == "message.created":
            seq = frame["message"]["seq"]
            self.frames.append((seq, received_at, frame["event_id"] is not None))
            self.seqs.add(seq)
            self.created_at[seq] = frame["message"].get("created_at")
        elif frame["type"] == "typing":
            self.typing += 1
        elif frame["type"] == "error":
            self.error_codes.append(frame["code"])


class Audience:
    """The subscribers of one chat, each listening in a task of its own."""

    def __init__(self, sockets: list[ClientConnection]) -> None:
        self.subscribers = [Subscriber(ws=ws) for ws in sockets]
        self.tasks = [asyncio.create_task(subscriber.listen()) for subscriber in self.subscribers]

    @classmethod
    async def connect(cls, urls: list[str]) -> Audience:
        return cls(await open_sockets(urls))

    def reset(self) -> None:
        """Forget what arrived so far: the next run counts only its own frames."""
        for subscriber in self.subscribers:
            subscriber.frames, subscriber.seqs, subscriber.created_at = [], set(), {}
            subscriber.typing = subscriber.typing_sent = 0

    def start_typing(self, every: float) -> None:
        """Every subscriber sends {"type": "typing"} every `every` s (±10 %), from a random moment in the first
        interval on: a chat full of people typing at once (issue 12's typing burst)."""
        self.stop_typing()
        self.typists = [asyncio.create_task(self._type(subscriber, every)) for subscriber in self.subscribers]

    def stop_typing(self) -> None:
        for task in getattr(self, "typists", []):
            task.cancel()
        self.typists = []

    @staticmethod
    async def _type(subscriber: Subscriber, every: float) -> None:
        await asyncio.sleep(random.uniform(0, every))
        while True:
            try:
                await subscriber.ws.send('{"type": "typing"}')
            except ConnectionClosed:
                return
            subscriber.typing_sent += 1
            await asyncio.sleep(every * random.uniform(0.9, 1.1))

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
        return deliveries(self.subscribers, sent_at)

    async def close(self) -> None:
        self.stop_typing()
        await close_sockets([subscriber.ws for subscriber in self.subscribers])
        await asyncio.wait(self.tasks, timeout=10)


def deliveries(subscribers: list[Received], sent_at: dict[int, float]) -> dict:
    """What arrived for the posts `sent_at` (seq -> POST send time, time.monotonic()): latencies, losses, repeats;
    and commit -> frame, from each message's `created_at` (stamped in the transaction that commits it; wall
    clock, turned into monotonic time here) to the frame's receipt."""
    frames = [(seq, at, live) for s in subscribers for seq, at, live in s.frames if seq in sent_at]
    latencies = sorted(at - sent_at[seq] for seq, at, _ in frames)
    expected = set(sent_at)
    first_sent = min(sent_at.values(), default=0.0)
    last_received = max((at for _, at, _ in frames), default=first_sent)
    return {
        "subscribers": len(subscribers),
        "messages": len(sent_at),
        "frames_expected": len(subscribers) * len(sent_at),
        "frames_received": len(frames),
        "lost": sum(len(expected - s.seqs) for s in subscribers),
        "duplicates": sum(len(s.frames) - len(s.seqs) for s in subscribers),
        "subscribers_out_of_order": sum(
            any(a[0] >= b[0] for a, b in zip(s.frames, s.frames[1:])) for s in subscribers
        ),
        "frames_from_database": sum(not live for _, _, live in frames),  # gap fills
        "error_frames": dict(Counter(code for s in subscribers for code in s.error_codes)),
        "closed": dict(Counter(s.close_code for s in subscribers if s.close_code is not None)),
        "delivered_per_s": len(frames) / (last_received - first_sent) if last_received > first_sent else None,
        "typing_frames_sent": sum(s.typing_sent for s in subscribers),
        "typing_frames_received": sum(s.typing for s in subscribers),
        "latency_ms": latency_summary(latencies),
        "commit_to_frame_ms": latency_summary(sorted(commit_to_frame(subscribers, sent_at))),
    }


def commit_to_frame(subscribers: list[Received], sent_at: dict[int, float]) -> list[float]:
    """Seconds from each message's created_at to each receipt of its frame. CLOCK_MONOTONIC is one clock for
    every process of this machine; the wall clock's offset to it is taken once (a run lasts seconds)."""
    offset = time.time() - time.monotonic()
    created: dict[int, float] = {}
    for subscriber in subscribers:
        for seq, at in subscriber.created_at.items():
            if seq in sent_at and seq not in created and at:
                created[seq] = datetime.fromisoformat(at).timestamp() - offset
    return [at - created[seq] for s in subscribers for seq, at, _ in s.frames if seq in created]


class LoopLag:
    """How late this process's event loop wakes a task that sleeps `interval` s: near 0 while the loop keeps
    up; milliseconds when receiving, parsing or posting hold it (then the client, not the server, adds to
    what it measures)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.lags = interval, []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.lags.append(time.monotonic() - before - self.interval)

    def reset(self) -> None:
        self.lags = []

    def summary(self) -> dict[str, float | None]:
        return latency_summary(sorted(self.lags))

    def stop(self) -> None:
        self.task.cancel()
