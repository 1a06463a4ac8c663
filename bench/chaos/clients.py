"""The chaos suite's clients: posters and editors that retry like a careful app, subscribers that resume like
the page.

A `Subscriber` is one person with one chat open in the bundled page (chats/static/chats/app.js): it opens
`ws/chats/{id}/?token=…&after_version=<the last version received>`, keeps the chat as its frames show it
(every message's text, tombstone and version; the members), and on any close reconnects with that version
after the page's backoff (500 ms, or 5 s after 4429, doubling while attempts fail to open, reset once a socket
opens, ±25 % jitter). It stops for good only where the page does (4401, 4404, 4410). It records what the
service's promise is about: each version at most once and in increasing order, and in the end the database's
state. One subscriber in five keeps the older protocol (`after_seq=<last seq>`: new messages only, every seq
exactly once, in order, no gaps), which the service still serves.

A `Poster` sends each post with an Idempotency-Key, retrying on connection errors, timeouts and 5xx with
the same key, so a retried post is never a second message; then, for some posts, their edits (PATCH, with a
key of their own) and deletions (DELETE, idempotent), one after another a moment apart, some of them racing
(an edit and a delete of one message sent together). All run as asyncio tasks in one process.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.httpclient import parse_head

STOP_FOR_GOOD = {4401: "unauthenticated", 4404: "chat not found", 4410: "chat deleted"}


# ---- HTTP ------------------------------------------------------------------------------------------------

class HttpError(Exception):
    """The connection failed or timed out before a whole response arrived."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time; JSON in and out."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, token: str, payload: Any = None,
                      headers: dict[str, str] | None = None, timeout: float = 15.0) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._request(method, path, token, payload, headers or {}), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            self.close()
            raise HttpError(f"{type(error).__name__}: {error}") from None

    async def _request(self, method, path, token, payload, headers) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Authorization: Token {token}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, response_headers = parse_head(await self.reader.readuntil(b"\r\n\r\n"))
        if "content-length" not in response_headers:
            raise ValueError(f"response {status} without Content-Length")
        content = await self.reader.readexactly(int(response_headers["content-length"]))
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ---- posting ---------------------------------------------------------------------------------------------

@dataclass
class Post:
    number: int
    chat_id: str
    token: str
    text: str
    kind: str
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_sent_at: float | None = None
    last_sent_at: float | None = None  # the attempt that succeeded
    done_at: float | None = None
    seq: int | None = None
    returned_text: str | None = None
    outcome: str = "pending"  # ok | failed (a 4xx other than 429) | gave up (retries ran out)
    changes: list[Change] = field(default_factory=list)  # made one after another once the post is in
    owner_token: str = ""  # the chat owner's: some deletions are the owner's


@dataclass
class Change:
    """An edit (PATCH with `text` and an Idempotency-Key of its own) or a deletion (DELETE) of a posted message.

    `racing`: sent at the same moment as the racing changes next to it (an edit against a delete of one
    message), so either may win: a deletion always answers 204, an edit 200 or, if the deletion came first,
    409 message_deleted."""

    kind: str  # "edit" | "delete"
    text: str | None = None
    by_owner: bool = False  # a deletion by the chat's owner instead of the author
    racing: bool = False
    delay: float = 0.0  # seconds after the previous step (the post, or the change before)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcome: str = "pending"  # ok | lost the race (409 after a racing delete) | failed | gave up | not sent
    version: int | None = None  # an edit's answer: the message's version after it


class Poster:
    """Posts at a fixed rate over a pool of keep-alive connections, retrying with the same key."""

    def __init__(self, host: str, port: int, connections: int = 16, attempt_timeout: float = 15.0) -> None:
        self.host, self.port = host, port
        self.free: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for _ in range(connections):
            self.free.put_nowait(HttpConnection(host, port))
        self.attempt_timeout = attempt_timeout
        self.behind_schedule_max = 0.0

    async def attempt(self, method: str, path: str, token: str, payload: Any, headers: dict[str, str] | None,
                      statuses: list[int], errors: list[str]) -> tuple[int | None, bytes]:
        connection = await self.free.get()
        try:
            status, body = await connection.request(method, path, token, payload, headers, self.attempt_timeout)
        except HttpError as error:
            errors.append(error.args[0][:200])
            return None, b""
        finally:
            self.free.put_nowait(connection)
        statuses.append(status)
        return status, body

    async def send(self, post: Post, give_up_at: float) -> None:
        path = f"/api/chats/{post.chat_id}/messages/"
        delay = 0.2
        while True:
            now = time.monotonic()
            post.first_sent_at = post.first_sent_at or now
            post.last_sent_at = now
            status, body = await self.attempt("POST", path, post.token, {"text": post.text},
                                              {"Idempotency-Key": post.key}, post.statuses, post.errors)
            if status is not None:
                if status in (200, 201):
                    message = json.loads(body)
                    post.seq, post.returned_text = message["seq"], message["text"]
                    post.outcome, post.done_at = "ok", time.monotonic()
                    return
                if status < 500 and status != 429:
                    post.errors.append(body[:300].decode(errors="replace"))
                    post.outcome, post.done_at = "failed", time.monotonic()
                    return
            if time.monotonic() + delay > give_up_at:
                post.outcome, post.done_at = "gave up", time.monotonic()
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def change(self, post: Post, change: Change, give_up_at: float) -> None:
        """One edit or deletion of a posted message, retried like a post (an edit with its own key)."""
        path = f"/api/chats/{post.chat_id}/messages/{post.seq}/"
        token = post.owner_token if change.by_owner else post.token
        method, payload, headers, done = (
            ("PATCH", {"text": change.text}, {"Idempotency-Key": change.key}, (200,)) if change.kind == "edit"
            else ("DELETE", None, None, (204,)))
        delay = 0.2
        while True:
            status, body = await self.attempt(method, path, token, payload, headers, change.statuses, change.errors)
            if status is not None:
                if status in done:
                    change.outcome = "ok"
                    if change.kind == "edit":
                        answer = json.loads(body)
                        change.version = answer["version"]
                        if answer["text"] != change.text:  # the same key's repeat after a racing deletion
                            change.outcome = "lost the race" if change.racing and answer["deleted"] else "wrong text"
                    return
                if status == 409 and change.racing and change.kind == "edit" and b"message_deleted" in body:
                    change.outcome = "lost the race"
                    return
                if status < 500 and status != 429:
                    change.errors.append(body[:300].decode(errors="replace"))
                    change.outcome = "failed"
                    return
            if time.monotonic() + delay > give_up_at:
                change.outcome = "gave up"
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def send_and_change(self, post: Post, retry_for: float) -> None:
        """The post, then its changes in order, each `delay` after the step before (racing ones together)."""
        await self.send(post, time.monotonic() + retry_for)
        if post.outcome != "ok":
            for change in post.changes:
                change.outcome = "not sent"
            return
        index = 0
        while index < len(post.changes):
            group = [post.changes[index]]
            while group[0].racing and index + len(group) < len(post.changes) and post.changes[index + len(group)].racing:
                group.append(post.changes[index + len(group)])
            await asyncio.sleep(group[0].delay)
            give_up_at = time.monotonic() + retry_for
            await asyncio.gather(*(self.change(post, change, give_up_at) for change in group))
            index += len(group)

    async def run(self, posts: list[Post], rate: float, retry_for: float) -> None:
        """Sends `posts` at `rate` per second, each retried until `retry_for` s after its first attempt, then
        their changes (which do not count against the rate: they follow their post)."""
        start = time.monotonic()
        tasks = []
        for index, post in enumerate(posts):
            scheduled = start + index / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            self.behind_schedule_max = max(self.behind_schedule_max, time.monotonic() - scheduled)
            tasks.append(asyncio.create_task(self.send_and_change(post, retry_for)))
        await asyncio.gather(*tasks)

    def close(self) -> None:
        while not self.free.empty():
            self.free.get_nowait().close()


# ---- subscribing -----------------------------------------------------------------------------------------

CHANGE_TYPES = ("message.created", "message.edited", "message.deleted", "member.joined", "member.left")


@dataclass
class Subscriber:
    """One chat open in the page, kept open across closes by resuming after the last version received (or,
    with protocol "seq", the last seq)."""

    number: int
    url: str  # ws://…/ws/chats/{id}/?token=…
    chat_id: str
    user: str
    storm_mean_s: float | None = None  # reconnect storm: close the socket after ~this many seconds, at random
    protocol: str = "version"  # "version": ?after_version=, every change; "seq": ?after_seq=, new messages only

    last_seq: int = 0  # protocol seq: the highest seq received
    last_version: int = 0  # protocol version: the highest version received
    versions: set[int] = field(default_factory=set)  # every version received
    messages: dict[int, tuple[int, int, bool]] = field(default_factory=dict)  # seq -> (version, text hash, deleted)
    members: set[str] = field(default_factory=set)
    texts_seen: set[tuple[int, int]] = field(default_factory=set)  # (seq, text hash) of every message frame
    received_at: dict[int, float] = field(default_factory=dict)  # seq -> first receipt (monotonic)
    text_hashes: dict[int, int] = field(default_factory=dict)  # seq -> hash of the text first received
    frames: int = 0
    live_frames: int = 0
    changes_received: Counter = field(default_factory=Counter)  # frame type -> count (edits, deletions, members)
    duplicates: int = 0  # a version (or, protocol seq, a seq) received again; a seq created twice
    order_violations: int = 0  # a version (seq) below the highest one received, not received before
    unknown_changes: int = 0  # an edit or deletion of a message this client never had
    version_mismatch: int = 0  # a message frame whose version is not its message's
    versions_skipped: int = 0  # versions jumped over: superseded changes a replay left out (informative)
    gaps_after_resume: int = 0  # protocol seq: a jump past last_seq + 1 on a socket opened with after_seq > 0
    gaps_live: int = 0  # protocol seq: a jump on the first socket
    gap_examples: list[tuple[int, int, int]] = field(default_factory=list)  # (socket number, expected, got)
    closes: Counter = field(default_factory=Counter)  # close code -> times ("refused: 403", "connect: …")
    error_frames: Counter = field(default_factory=Counter)
    other_frames: Counter = field(default_factory=Counter)
    sockets_opened: int = 0
    client_closes: int = 0  # reconnect storm: closes this client chose
    stopped_by: str | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    ws: Any = None
    _stop: bool = False

    @property
    def position(self) -> int:
        return self.last_version if self.protocol == "version" else self.last_seq

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop = True
        if self.ws is not None:
            await asyncio.wait([asyncio.create_task(self.ws.close())], timeout=5)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        attempt = 0
        rng = random.Random(self.number)
        while not self._stop:
            code = await self._one_socket(rng)
            if self._stop:
                return
            opened = isinstance(code, tuple)
            if opened:
                code = code[0]
                attempt = 0  # as the page: onopen resets the backoff
            if isinstance(code, int) and code in STOP_FOR_GOOD:
                self.stopped_by = f"{code} ({STOP_FOR_GOOD[code]})"
                return
            base = 5.0 if code == 4429 else 0.5
            delay = min(30.0, base * 2 ** attempt) * (0.75 + rng.random() / 2)
            attempt += 1
            await asyncio.sleep(delay)

    async def _one_socket(self, rng: random.Random):
        """One connection: returns (close code,) if it opened, else what refused it."""
        url = f"{self.url}&after_{self.protocol}={self.position}"
        resumed = self.sockets_opened > 0 or self.position > 0
        try:
            self.ws = await websockets.connect(url, proxy=None, compression=None, ping_interval=None,
                                               max_size=None, open_timeout=15, close_timeout=3)
        except InvalidStatus as error:
            key = f"refused {error.response.status_code}"
            self.closes[key] += 1
            return key
        except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as error:
            key = f"connect {type(error).__name__}"
            self.closes[key] += 1
            return key
        self.sockets_opened += 1
        socket_number = self.sockets_opened
        self.connected.set()
        storm = None
        if self.storm_mean_s:
            storm = asyncio.get_running_loop().call_later(rng.expovariate(1 / self.storm_mean_s), self._storm_close)
        try:
            async for raw in self.ws:
                self._frame(raw, resumed, socket_number)
        except ConnectionClosed:
            pass
        finally:
            if storm is not None:
                storm.cancel()
        code = self.ws.close_code if self.ws.close_code is not None else 1006
        if not self._stop:
            self.closes[code] += 1
        return (code,)

    def _storm_close(self) -> None:
        if self.ws is not None and not self._stop:
            self.client_closes += 1
            asyncio.ensure_future(self.ws.close(1000))

    def _frame(self, raw: str | bytes, resumed: bool, socket_number: int) -> None:
        received = time.monotonic()
        self.frames += 1
        try:
            frame = json.loads(raw)
        except ValueError:
            self.other_frames["not json"] += 1
            return
        kind = frame.get("type")
        if kind not in CHANGE_TYPES or (self.protocol == "seq" and kind != "message.created"):
            if kind == "error":
                self.error_frames[frame.get("code")] += 1
            else:
                self.other_frames[kind] += 1
            return
        if frame.get("event_id") is not None:
            self.live_frames += 1
        if self.protocol == "seq":
            self._new_message(frame["message"], received, resumed, socket_number)
        else:
            self._change(frame, kind, received)

    def _change(self, frame: dict, kind: str, received: float) -> None:
        """protocol version: each version at most once and in increasing order; the chat's state applied."""
        version = frame.get("version")
        if not isinstance(version, int):
            self.version_mismatch += 1
            return
        if version <= self.last_version:
            if version in self.versions:
                self.duplicates += 1
            else:
                self.order_violations += 1  # a version that was skipped earlier arrives late
            return
        self.versions_skipped += version - self.last_version - 1
        self.last_version = version
        self.versions.add(version)
        self.changes_received[kind] += 1
        if kind in ("member.joined", "member.left"):
            username = (frame.get("member") or {}).get("username")
            (self.members.add if kind == "member.joined" else self.members.discard)(username)
            return
        message = frame["message"]
        seq, text_hash = message["seq"], hash(message["text"])
        if message.get("version") != version:
            self.version_mismatch += 1
        self.texts_seen.add((seq, text_hash))
        if kind == "message.created":
            if seq in self.messages:
                self.duplicates += 1  # shown twice
            self.received_at.setdefault(seq, received)
            self.text_hashes.setdefault(seq, text_hash)
        elif seq not in self.messages:
            self.unknown_changes += 1  # an edit of a message this client was never given
        self.messages[seq] = (version, text_hash, bool(message["deleted"]))

    def _new_message(self, message: dict, received: float, resumed: bool, socket_number: int) -> None:
        """protocol seq: every seq exactly once, in order, no gaps."""
        seq = message["seq"]
        if seq in self.received_at:
            self.duplicates += 1
            return
        self.received_at[seq] = received
        self.text_hashes[seq] = hash(message["text"])
        self.texts_seen.add((seq, self.text_hashes[seq]))
        self.messages[seq] = (message.get("version"), self.text_hashes[seq], bool(message.get("deleted")))
        if seq < self.last_seq:
            self.order_violations += 1  # a seq that was skipped earlier arrives late
            return
        if seq > self.last_seq + 1:
            if resumed:
                self.gaps_after_resume += 1
            else:
                self.gaps_live += 1
            if len(self.gap_examples) < 5:
                self.gap_examples.append((socket_number, self.last_seq + 1, seq))
        self.last_seq = seq
