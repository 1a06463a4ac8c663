"""Websocket consumers: authorize, join a group, forward events. They never write.

`ChatStreamConsumer` guarantees each message seq reaches its client exactly once and in order: it joins
the group *before* reading the database, replays from the database up to the chat's last seq, then drops
any live frame at or below the last seq it sent and fills any gap from the database. Events arrive at
least once (Kafka, the relay and the forwarder may all repeat one), and a channel layer may lose one;
neither can show through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from chats.json_input import parse_json
from chats.live.frame_budget import FrameBudget
from chats.live.positions import ChatPosition, ChatPositions
from chats.live.presence import Presence
from chats.live.socket_slots import LAYER_ERRORS, SocketSlots
from chats.live.typing import TypingGate
from chats.pipeline.wire import (
    LOBBY_GROUP,
    VERSIONED_TYPES,
    change_frame,
    chat_group,
    message_frame,
    render,
    user_group,
)
from chats.queries import changes_after, chat_access, messages_after
from chats.runtime import metrics
from messaging_domain.exceptions import ChatNotFound

if TYPE_CHECKING:
    from chats.live.entry import Handshake

logger = logging.getLogger("chats.live.consumers")


CLOSE_TOO_BIG = 1009  # the standard code for a frame over the size limit
CLOSE_BAD_REQUEST = 4400  # a bad after_seq or after_version, or both
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_MEMBER = 4403  # removed from (or left) a private chat
CLOSE_NOT_FOUND = 4404
CLOSE_LAGGING = 4408  # the client fell too far behind: reconnect with ?after_version= (or after_seq) it was sent
CLOSE_CHAT_DELETED = 4410
CLOSE_TOO_MANY = 4429  # frames too fast, or too many sockets for one user
CLOSE_TRY_AGAIN = 1013  # the standard "try again later": Redis (socket counts, the channel layer) is away
UNAVAILABLE = "The service is briefly unavailable; reconnect."

REPLAY_PAGE = 500
BATCH_OPEN, BATCH_CLOSE = '{"type": "batch", "frames": [', "]}"  # the frames inside are rendered already
BATCH_BYTES = len(BATCH_OPEN) + len(BATCH_CLOSE)
# Past this many frames behind (queued in this process, or missing upstream), the client is told to
# resume from the database instead: a resume is one indexed query, a backlog is unbounded memory.
MAX_LAG = 1000
# ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
AFTER_SEQ = re.compile(r"[0-9]{1,11}")

# The metrics' children, looked up once: a frame costs an increment, not a label lookup.
OPEN_SOCKETS = {kind: metrics.OPEN_SOCKETS.labels(kind) for kind in metrics.SOCKET_KINDS}
FRAMES_SENT = {kind: metrics.FRAMES_SENT.labels(kind) for kind in metrics.SOCKET_KINDS}
COMMIT_TO_FRAME = {kind: metrics.COMMIT_TO_FRAME_SECONDS.labels(kind) for kind in metrics.SOCKET_KINDS}
GAP_FILLS = {trigger: metrics.GAP_FILLS.labels(trigger) for trigger in metrics.GAP_TRIGGERS}


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    """What both streams share: admission (user, socket cap, credential), the ping/pong protocol with its
    limits, error frames, event dispatch, and leaving every group joined."""

    slots = SocketSlots()
    kind = ""  # the metrics' label: "lobby" or "chat"
    groups = ()  # Channels' own joining of `groups` is unused (see join): no empty list per socket

    @property
    def channel_layer(self):
        return get_channel_layer(self.channel_layer_alias)  # one per process: not kept by every socket

    def __init__(self, handshake: Handshake | None = None) -> None:
        # Every attribute a socket holds is set here, first and in one order. CPython 3.11 shares one table of
        # attribute names among the instances of a class, but only takes in names while few instances exist:
        # an attribute first set later (after an await, with hundreds of sockets opening) makes every socket
        # keep its attributes in a dict of its own instead, ~600 bytes more per socket. It shares at most 30 names:
        # a 30th attribute turns every socket's 300-byte dict into a 1.6 KB one (tests/websocket/test_footprint.py).
        super().__init__()
        self.handshake = handshake  # what chats.live.entry found out, until the socket is accepted
        self.scope: dict[str, Any] | None = None
        self.base_send = None
        self.channel_name = ""
        self.task: asyncio.Task | None = None  # the socket's own, which waits for the client
        self.inbox: collections.deque | None = None  # group messages not yet dispatched, while there are some
        self.reader: asyncio.Task | None = None  # dispatches the inbox, while it has messages
        self.failed: BaseException | None = None  # what a group message's dispatch raised: it ends the socket
        self.one_at_a_time: asyncio.Lock | None = None  # held while a message is dispatched
        self.at_the_lock = 0  # messages dispatched or waiting to be
        self.accepted = False
        self.admission: asyncio.Timeout | None = None  # the deadline of the handshake, until accepted
        self.user_id: int | None = None  # whose socket slot this socket holds, until given back
        self.username = ""  # the user's, once admitted
        self.credential = ""  # chats.live.credentials.credential_id of what authenticated the socket
        self.budget: FrameBudget | None = None  # made at the client's first frame: many sockets never send one
        self.joined: list[str] = []
        self.batching = False  # the client asked for ?batch=1
        self.pending: list[str] | None = None  # frames of the batch being made, while one is
        self.pending_bytes = 0

    # Live events and the frames clients send never touch the database on the way through, so they skip
    # Channels' per-message hop to a worker thread that closes stale database connections. That thread is the
    # one every sync view and database read of this process waits for: a hundred typists would queue a hundred
    # hops a second in front of the POSTs. The database reads that do happen (admission, gap fills) go through
    # database_sync_to_async, which closes stale connections itself.
    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "chat.event":
            await self.chat_event(message)
        elif message["type"] in ("chat.typing", "chat.presence"):
            await self.from_another_user(message)
        elif message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def from_another_user(self, message: dict[str, Any]) -> None:
        """Typing and presence frames (rendered once by their sender), to everyone but the user they are about
        (a crowd's `presence` list is about nobody: to everyone)."""
        if message["username"] != self.username:
            await self.send(text_data=message["frame"])

    async def admit(self) -> bool:
        """Check who connects; on success join their user's group and return True."""
        handshake = self.handshake
        if handshake is not None and handshake.token_refused:
            await self.reject(
                CLOSE_UNAUTHENTICATED, "invalid_token",
                "This token is invalid or revoked: get a new one from /api/auth/token/.",
            )
            return False
        user = handshake.user if handshake is not None else None
        if not (user and user.is_authenticated):
            await self.reject(CLOSE_UNAUTHENTICATED, "not_authenticated", "Log in, or connect with ?token=<key>.")
            return False
        batch = handshake.query.get("batch", ["0"])[-1]
        if batch not in ("0", "1"):
            await self.reject(CLOSE_BAD_REQUEST, "invalid_batch", "batch must be 1 (frames in batches) or 0.")
            return False
        self.batching = batch == "1"
        if not await self.slots.take(user.pk):
            await self.reject(
                CLOSE_TOO_MANY, "too_many_sockets",
                f"At most {settings.CHAT_WS_MAX_SOCKETS_PER_USER} open sockets per user.",
            )
            return False
        # Revoking the credential reaches the socket through its user's group (chats.live.credentials).
        self.user_id, self.username, self.credential = user.pk, user.get_username(), handshake.credential
        await self.join(user_group(user.pk))
        return True

    async def join(self, group: str) -> None:
        self.joined.append(group)  # first: a join cut short by the admission deadline is left too
        await self.channel_layer.group_add(group, self.channel_name)

    async def __call__(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, with a loop that costs less per open socket, and what the socket
        holds given back however it ends.

        As in Channels, what the client sends and what the channel layer delivers are dispatched one message
        at a time, in the order they arrive. Channels' loop (`await_many_dispatch`) waits with a task per
        source and an `asyncio.wait` per message, and the layer keeps a queue and a waiting task per socket:
        ~7 KB of every idle socket. Here the socket's own task waits for the client; the layer hands group
        messages to `put_nowait` (chats.live.layer), which keeps them in `inbox` and starts a task to dispatch
        them only while there are some (`read_inbox`); a lock keeps the two apart (`dispatch_one_at_a_time`).
        """
        # daphne cancels consumers at shutdown without calling disconnect(), and a consumer that raises
        # never reaches it, hence `finally`. (A process that dies gives nothing back; its socket lease
        # expires instead, see chats.live.socket_slots.)
        self.scope, self.base_send = scope, send
        self.task = asyncio.current_task()
        self.channel_name = self.channel_layer.attach(self)
        try:
            while self.failed is None:
                try:
                    await self.dispatch_one_at_a_time(await receive())
                except asyncio.CancelledError:
                    if self.failed is None:
                        raise  # daphne cancelled the socket
                    self.task.uncancel()  # inbox_ended did, to end the socket with the inbox's error
            raise self.failed
        except StopConsumer:
            pass
        finally:
            self.channel_layer.detach(self.channel_name)
            self.inbox = None
            if self.reader is not None and not self.reader.done():
                self.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # the socket ends either way
                    await self.reader
            await self.release()
            if self.accepted:
                OPEN_SOCKETS[self.kind].dec()

    def put_nowait(self, message: bytes) -> None:
        """A group message for this socket, from the channel layer's reader (chats.live.layer)."""
        if self.failed is not None:
            return  # ending
        if self.inbox is None:
            self.inbox = collections.deque()
        self.inbox.append(message)
        if self.reader is None:
            self.start_reading()

    def start_reading(self) -> None:
        self.reader = asyncio.ensure_future(self.read_inbox())
        self.reader.add_done_callback(self.inbox_ended)

    async def read_inbox(self) -> None:
        while self.inbox:
            message = self.channel_layer.deserialize(self.inbox.popleft())
            await self.dispatch_one_at_a_time(message, self.batching)
        self.inbox = None  # an empty deque is 600 bytes: an idle socket keeps none

    def inbox_ended(self, reader: asyncio.Task) -> None:
        """An exception (StopConsumer too) in a group message's dispatch ends the socket, as in Channels: at once
        if the socket's task is waiting for the client (or for the lock), else when its dispatch returns."""
        self.reader = None
        if reader.cancelled():
            return
        error = reader.exception()
        if error is None:
            if self.inbox:  # arrived after the reader's last look
                self.start_reading()
            return
        self.failed = error
        if not (self.one_at_a_time is not None and self.one_at_a_time.locked()):
            self.task.cancel()

    async def dispatch_one_at_a_time(self, message: dict[str, Any], with_queued: bool = False) -> None:
        # The lock exists only while a message is dispatched or waits to be: an asyncio.Lock keeps the deque of
        # its first contention (760 bytes) for good, and most sockets meet one as they connect (presence frames
        # arrive while the handshake reads the database).
        if self.one_at_a_time is None:
            self.one_at_a_time = asyncio.Lock()
        lock = self.one_at_a_time
        self.at_the_lock += 1
        try:
            async with lock:
                if with_queued:  # a batching socket: this message and those queued behind it, in one batch
                    async with self.batched():
                        await self.dispatch(message)
                        for queued in self.take_queued():
                            await self.dispatch(queued)
                else:
                    await self.dispatch(message)
        finally:
            self.at_the_lock -= 1
            if not self.at_the_lock:
                self.one_at_a_time = None

    async def disconnect(self, code: int) -> None:
        await self.release()

    async def release(self) -> None:
        """Leave every group and give the socket slot back; safe to call twice."""
        joined, self.joined = self.joined, []
        try:
            for group in joined:
                await self.channel_layer.group_discard(group, self.channel_name)
            if self.user_id is not None:
                user_id, self.user_id = self.user_id, None
                await self.slots.give_back(user_id)
        except LAYER_ERRORS as error:
            logger.warning("socket %s: could not give back what it held (%s)", self.channel_name, error)

    async def credentials_revoked(self, message: dict[str, Any]) -> None:
        if message.get("credential", self.credential) != self.credential:
            return  # another credential of this user ended
        await self.send_error(
            "credentials_revoked", message.get("reason") or "You logged out or your token was revoked."
        )
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        # Admission needs Redis (socket counts, group subscriptions, presence) and the database. While Redis
        # restarts, a client is told to come back (1013) instead of getting a bare HTTP 500 for the handshake; while
        # either is slow to answer, it is told so too once CHAT_WS_ADMISSION_SECONDS have passed, before daphne's
        # handshake timeout would drop the connection with no answer at all. The deadline ends at `accept`.
        try:
            async with self.admission_deadline():
                await super().websocket_connect(message)
        except (*LAYER_ERRORS, TimeoutError) as error:
            reason = "admission took too long" if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
            logger.warning("socket refused (%s)", reason)
            await self.reject(CLOSE_TRY_AGAIN, "unavailable", UNAVAILABLE)

    @contextlib.asynccontextmanager
    async def admission_deadline(self):
        """Until the deadline set as the handshake began (chats.live.entry)."""
        deadline = self.handshake.deadline if self.handshake is not None else None
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + settings.CHAT_WS_ADMISSION_SECONDS
        async with asyncio.timeout_at(deadline) as self.admission:
            try:
                yield
            finally:
                self.admission = None

    async def accept(self, subprotocol: str | None = None, headers=None) -> None:
        if self.admission is not None:
            self.admission.reschedule(None)  # open: what follows (a replay) takes as long as it takes
            self.admission = None
        self.handshake = None  # admitted: the socket keeps its user's id and name, not the row
        self.accepted = True
        OPEN_SOCKETS[self.kind].inc()  # and down as the socket ends (__call__)
        await super().accept(subprotocol, headers)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if text_data is not None or bytes_data is not None:
            FRAMES_SENT[self.kind].inc()
            if self.pending is not None and text_data is not None:
                size = len(text_data.encode())
                if self.pending and BATCH_BYTES + self.pending_bytes + size > settings.CHAT_WS_BATCH_BYTES:
                    await self.flush()
                self.pending.append(text_data)
                self.pending_bytes += size + 1  # and a comma: the batch is BATCH_BYTES + pending_bytes - 1 bytes
                if close:
                    await self.close()
                return
        await super().send(text_data, bytes_data, close)

    @contextlib.asynccontextmanager
    async def batched(self):
        """On a batching socket, the frames sent inside go out as `{"type": "batch", "frames": [...]}` transport
        frames of at most CHAT_WS_BATCH_BYTES (a lone frame as itself), when the block ends. Only frames that
        are ready together are batched: the block never waits for more. Nested blocks join the outer batch."""
        if not self.batching or self.pending is not None:
            yield
            return
        self.pending = []
        try:
            yield
            await self.flush()
        finally:
            self.pending, self.pending_bytes = None, 0  # an error ends the socket: what was not sent is dropped

    async def flush(self) -> None:
        """Send the batch made so far, if any (the batch stays open for frames that follow)."""
        frames, self.pending, self.pending_bytes = self.pending, [], 0
        if len(frames) == 1:
            await super().send(frames[0])
        elif frames:
            await super().send(BATCH_OPEN + ",".join(frames) + BATCH_CLOSE)

    def take_queued(self):
        """Group messages already waiting in this process for this socket (those waiting when called: a busy
        group cannot hold the socket's turn for ever)."""
        for _ in range(self.backlog()):
            if not self.inbox:
                return
            yield self.channel_layer.deserialize(self.inbox.popleft())

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if self.pending:
            await self.flush()  # the frames before the close (an error saying why, say) go first
        metrics.CLOSES.labels(str(code if isinstance(code, int) and code is not True else 1000)).inc()
        await super().close(code, reason)

    async def send_live(self, message: dict[str, Any]) -> None:
        """Send a live event's frame (rendered once by the forwarder for every socket), timed from its commit."""
        await self.send(text_data=message["frame"])
        occurred_at = message.get("occurred_at")
        if occurred_at is not None:
            COMMIT_TO_FRAME[self.kind].observe(time.time() - occurred_at)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "sent %s %s to %s", message["event_type"], message.get("event_id"), self.channel_name,
                extra={"event_id": message.get("event_id"), "chat_id": message.get("chat_id"),
                       "request_id": message.get("request_id"), "seq": message.get("seq")},
            )

    async def reject(self, code: int, error: str, message: str) -> None:
        """Refuse a connection during the handshake: close with `code`, after an error frame saying why.

        The handshake is accepted first: a close before accepting reaches the client as a bare HTTP 403.
        """
        if not self.accepted:
            await self.accept()
        await self.send_error(error, message)
        await self.close(code=code)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json(error_frame(code, message, **extra))

    async def send_json(self, content: dict[str, Any], close: bool = False) -> None:
        # Channels' send_json calls AsyncWebsocketConsumer.send, past this class's `send` (its count, batches).
        await self.send(text_data=render(content), close=close)  # one rendering for every frame (chats.pipeline.wire)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The limit on what a client sends is kept here, not in daphne: autobahn's limits apply to the
        # frames the server sends too, so the web server's are only a memory ceiling (chats.runtime.webserver).
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.CHAT_WS_MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if self.budget is None:
            self.budget = FrameBudget(settings.CHAT_WS_FRAMES_PER_SECOND, settings.CHAT_WS_FRAME_BURST)
        if not self.budget.spend():
            await self.send_error("rate_limited", "Too many frames; slow down and reconnect.")
            await self.close(code=CLOSE_TOO_MANY)
            return
        if text_data is None:
            await self.send_error("invalid_frame", "Binary frames are not supported; send JSON text.")
            return
        try:
            frame = parse_json(text_data)
        except ValueError:  # deep nesting included
            await self.send_error("invalid_json", "The frame is not JSON.")
            return
        if isinstance(frame, dict) and frame.get("type") == "ping":
            await self.send_json({"type": "pong"})
        elif not (isinstance(frame, dict) and await self.receive_frame(frame)):
            await self.send_error("unknown_type", self.frames_in)

    frames_in = 'The only frame a client sends is {"type": "ping"}.'

    async def receive_frame(self, frame: dict[str, Any]) -> bool:
        """Handle a frame other than ping; False if this stream does not take it."""
        return False

    async def chat_event(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def backlog(self) -> int:
        """Group messages waiting in this process for this consumer."""
        return len(self.inbox) if self.inbox else 0


class LobbyConsumer(EventStreamConsumer):
    """`ws/chats/`: public chats created or deleted (the lobby group), and the user's own events (their user
    group): their private chats created or deleted, memberships gained or lost, read positions moved."""

    kind = "lobby"

    async def connect(self) -> None:
        if not await self.admit():
            return
        await self.join(LOBBY_GROUP)
        await self.accept()  # only once subscribed: an open socket means nothing from now on is missed

    async def chat_event(self, message: dict[str, Any]) -> None:
        await self.send_live(message)


class ChatStreamConsumer(EventStreamConsumer):
    """`ws/chats/{id}/?after_version=V` (or nothing: from now): every change of one chat (messages created,
    edited and deleted; members joined and left), the current state of what changed after V first, then live,
    each version at most once and in increasing order. `?after_seq=N`: new messages only, each seq exactly
    once and in order (the older protocol, for clients that only want new messages).

    Live frames, gap fills and the position checks of chats.live.positions all move the stream's position
    (`sent_version`, or `sent_seq`); they take turns on `self.turn`, so nothing is sent twice or out of order
    whichever of them sends it.
    """

    kind = "chat"
    positions = ChatPositions()
    presence = Presence(EventStreamConsumer.slots)
    typing = TypingGate()
    frames_in = 'A chat stream takes {"type": "ping"} and {"type": "typing"}.'

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # which says why every attribute is set here
        self.turn = asyncio.Lock()
        self.chat_id: uuid.UUID | None = None
        self.chat_key = ""  # the chat id as events carry it
        self.private = False
        self.by_version = True
        self.present = False
        self.streaming = False
        self.sent_version = 0
        self.sent_seq = 0

    async def connect(self) -> None:
        if not await self.admit():
            return
        try:
            chat_id = uuid.UUID(self.handshake.route["chat_id"])
        except ValueError:
            await self.reject(CLOSE_NOT_FOUND, ChatNotFound.code, ChatNotFound.message_without_id)
            return
        query = self.handshake.query
        after_seq, after_version = query.get("after_seq", [None])[0], query.get("after_version", [None])[0]
        if after_seq is not None and after_version is not None:
            await self.reject(CLOSE_BAD_REQUEST, "invalid_request", "Give after_seq or after_version, not both.")
            return
        for name, value in (("after_seq", after_seq), ("after_version", after_version)):
            if value is not None and not AFTER_SEQ.fullmatch(value):
                await self.reject(CLOSE_BAD_REQUEST, f"invalid_{name}", f"{name} must be a whole number >= 0.")
                return
        # Join first, read second: a change committed in between arrives live and is dropped as seen,
        # instead of falling between the read and the join.
        await self.join(chat_group(chat_id))
        self.chat_id, self.chat_key = chat_id, str(chat_id)
        access = await database_sync_to_async(chat_access)(chat_id, self.user_id)
        if access is None or not access.visible:  # a private chat does not exist for a non-member
            await self.reject(CLOSE_NOT_FOUND, ChatNotFound.code, ChatNotFound.message_without_id)
            return
        self.private, self.by_version = access.private, after_seq is None
        first, online = await self.presence.enter(chat_id, self.username)
        self.present = True
        # Accept only now, subscribed and positioned: once the client sees the socket open, every change it
        # makes after that is one it will receive.
        await self.accept()
        await self.send_json({"type": "presence", "chat_id": self.chat_key, "online": online})
        if first:
            await self.presence.announce(chat_id, self.username, "presence.joined", online=len(online))
        async with self.turn:
            self.streaming = True
            if self.by_version:
                self.sent_version = access.version  # live only: start after what exists now
                if after_version is not None:
                    self.sent_version = min(int(after_version), access.version)
                    await self.send_changes_from_database()
            else:
                self.sent_seq = access.last_seq
                if after_seq is not None:
                    self.sent_seq = min(int(after_seq), access.last_seq)
                    await self.send_from_database(up_to_seq=access.last_seq)
        self.positions.watch(chat_id, self)

    async def release(self) -> None:
        self.streaming = False
        if self.chat_id is not None:
            self.positions.unwatch(self.chat_id, self)
        if self.present:
            self.present = False
            try:
                await self.presence.leave(self.chat_id, self.username)
            except LAYER_ERRORS as error:  # its lease lapses, and a sweep announces it then
                logger.warning("socket %s: could not leave presence (%s)", self.channel_name, error)
        await super().release()

    async def receive_frame(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") != "typing":
            return False
        # Past the rate a notice is dropped silently; the frame budget still counts it, so a flood closes.
        if self.streaming and self.typing.admit(self.chat_id, self.user_id):
            typing = {"type": "typing", "chat_id": self.chat_key, "username": self.username}
            await self.channel_layer.group_send(
                chat_group(self.chat_id), {"type": "chat.typing", "username": self.username, "frame": render(typing)}
            )
        return True

    async def chat_event(self, message: dict[str, Any]) -> None:
        if message["chat_id"] != self.chat_key:
            return  # the user's events about their other chats (this socket is in their user group too)
        async with self.turn:
            if self.streaming:
                await self.forward(message)

    async def forward(self, message: dict[str, Any]) -> None:
        event_type = message["event_type"]
        if event_type == "chat.deleted":
            await self.send_live(message)
            await self.end(CLOSE_CHAT_DELETED)
            return
        if self.by_version:
            await self.forward_change(message)
        elif event_type == "message.created":
            await self.forward_message(message)
        if event_type == "member.left" and self.private and self.user_id in (message.get("user_ids") or ()):
            await self.close_as_removed()  # they left or were removed: this private chat is no longer theirs

    async def forward_change(self, message: dict[str, Any]) -> None:
        version = message.get("version")
        if message["event_type"] not in VERSIONED_TYPES or version is None or version <= self.sent_version:
            return  # not a change of content, replayed already, or a repeated delivery
        if version - self.sent_version > MAX_LAG or self.backlog() > MAX_LAG:
            await self.lagging("after_version", self.sent_version)
            return
        if version > self.sent_version + 1:
            GAP_FILLS["live_gap"].inc()
            await self.send_changes_from_database()  # changes were lost upstream: send what is there now
            if version <= self.sent_version:
                return  # the database's state already includes (or supersedes) this change
        await self.send_live(message)
        self.sent_version = version

    async def forward_message(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        if seq <= self.sent_seq:
            return  # replayed already, or a repeated delivery
        if seq - self.sent_seq > MAX_LAG or self.backlog() > MAX_LAG:
            await self.lagging("after_seq", self.sent_seq)
            return
        if seq > self.sent_seq + 1:
            GAP_FILLS["live_gap"].inc()
            await self.send_from_database(up_to_seq=seq - 1)  # frames were lost upstream: fill the gap
        await self.send_live(message)
        self.sent_seq = seq

    async def lagging(self, resume_from: str, position: int) -> None:
        await self.send_error(
            "lagging", f"This connection fell behind; reconnect with {resume_from} to resume.", **{resume_from: position}
        )
        await self.end(CLOSE_LAGGING)

    def is_behind(self, position: ChatPosition) -> bool:
        """Behind `position` with nothing queued here that would take it there. Frames waiting in this process
        fill the gap themselves (a lost one among them shows as a gap in the next); reading the database for every
        socket of a busy chat instead made a busy web process slower the busier it got."""
        behind = position.version > self.sent_version if self.by_version else position.last_seq > self.sent_seq
        return behind and self.backlog() == 0

    async def catch_up(self, position: ChatPosition | None) -> None:
        """From chats.live.positions: the chat was at `position` an interval ago, or is gone (None)."""
        async with self.turn:
            if not self.streaming:
                return
            if position is None:
                await self.send_json({"type": "chat.deleted", "event_id": None, "chat_id": str(self.chat_id)})
                await self.end(CLOSE_CHAT_DELETED)
            elif self.is_behind(position):
                GAP_FILLS["position_check"].inc()
                if self.by_version:
                    await self.send_changes_from_database()
                else:
                    await self.send_from_database(up_to_seq=position.last_seq)

    async def removed(self) -> None:
        """From chats.live.positions: the user is no longer an active member of this private chat."""
        async with self.turn:
            if self.streaming:
                await self.close_as_removed()

    async def close_as_removed(self) -> None:
        await self.send_error("not_a_member", "You are no longer a member of this chat.")
        await self.end(CLOSE_NOT_A_MEMBER)

    async def end(self, code: int) -> None:
        self.streaming = False
        await self.close(code=code)

    async def send_from_database(self, up_to_seq: int) -> None:
        while self.sent_seq < up_to_seq:
            page = await database_sync_to_async(messages_after)(self.chat_id, self.sent_seq, up_to_seq, REPLAY_PAGE)
            if not page:
                return  # the chat was deleted meanwhile; its chat.deleted frame is on the way
            async with self.batched():
                for message in page:
                    await self.send_json(message_frame(message, event_id=None))
                    self.sent_seq = message["seq"]

    async def send_changes_from_database(self) -> None:
        """The current state of everything changed after `sent_version`, in version order: one frame per message
        or member, each at its latest version. A message the client has not seen arrives as `message.created`
        (even if edited or deleted since), one it has seen as `message.edited` or `message.deleted`."""
        seen_up_to = self.sent_version  # the client has every message created at or before this version
        created_here: set[int] = set()  # and those this replay sent as created (a later page may show one again)
        while True:
            page = await database_sync_to_async(changes_after)(self.chat_id, self.sent_version, REPLAY_PAGE)
            async with self.batched():
                for change in page:
                    await self.send_json(change_frame(change, self.chat_key, seen_up_to, created_here))
                    self.sent_version = change.version
            if len(page) < REPLAY_PAGE:
                return
