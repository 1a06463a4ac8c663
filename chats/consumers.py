"""Websocket consumers: authorize, join a group, forward events. They never write.

`ChatStreamConsumer` guarantees each message seq reaches its client exactly once and in order: it joins
the group *before* reading the database, replays from the database up to the chat's last seq, then drops
any live frame at or below the last seq it sent and fills any gap from the database. Events arrive at
least once (Kafka, the relay and the forwarder may all repeat one), and a channel layer may lose one;
neither can show through.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chats.queries import chat_last_seq, messages_after

LOBBY_GROUP = "chats"

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_LAGGING = 4408  # the client fell too far behind: reconnect with ?after_seq=<last seq received>
CLOSE_CHAT_DELETED = 4410

REPLAY_PAGE = 500
# Past this many frames behind (queued in this process, or missing upstream), the client is told to
# resume from the database instead: a resume is one indexed query, a backlog is unbounded memory.
MAX_LAG = 1000


def chat_group(chat_id: uuid.UUID | str) -> str:
    return f"chat.{chat_id}"


class EventStreamConsumer(AsyncJsonWebsocketConsumer):
    """What both streams share: authentication, the ping/pong protocol, error frames, event dispatch."""

    # Live events never touch the database on the way through, so they skip Channels' per-message
    # hop to a worker thread that closes stale database connections; the database reads that do happen
    # (gap fills) go through database_sync_to_async, which does that itself.
    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "chat.event":
            await self.chat_event(message)
        else:
            await super().dispatch(message)

    async def reject(self, code: int, error: str, message: str) -> None:
        """Close with `code`, after an error frame saying why.

        The handshake is accepted first: a close before accepting reaches the client as a bare HTTP 403.
        """
        await self.accept()
        await self.send_error(error, message)
        await self.close(code=code)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    def authenticated(self) -> bool:
        user = self.scope.get("user")
        return bool(user and user.is_authenticated)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("invalid_frame", "Binary frames are not supported; send JSON text.")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid_json", "The frame is not JSON.")
            return
        if isinstance(frame, dict) and frame.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", 'The only frame a client sends is {"type": "ping"}.')

    async def chat_event(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def backlog(self) -> int:
        """Frames waiting in this process for this consumer (the pub/sub layer keeps a queue per channel)."""
        queue = getattr(self.channel_layer, "channels", {}).get(self.channel_name)
        return queue.qsize() if queue is not None else 0


class LobbyConsumer(EventStreamConsumer):
    """`ws/chats/`: every chat created or deleted."""

    async def connect(self) -> None:
        if not self.authenticated():
            await self.reject(CLOSE_UNAUTHENTICATED, "not_authenticated", "Log in, or connect with ?token=<key>.")
            return
        await self.channel_layer.group_add(LOBBY_GROUP, self.channel_name)
        await self.accept()  # only once subscribed: an open socket means nothing from now on is missed

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(LOBBY_GROUP, self.channel_name)

    async def chat_event(self, message: dict[str, Any]) -> None:
        envelope = message["envelope"]
        frame = {"type": envelope["event_type"], "event_id": envelope["event_id"], "chat_id": envelope["chat_id"]}
        if envelope["event_type"] == "chat.created":
            frame["chat"] = envelope["payload"]
        await self.send_json(frame)


class ChatStreamConsumer(EventStreamConsumer):
    """`ws/chats/{id}/?after_seq=N`: one chat's messages, replayed after N, then live."""

    chat_id: uuid.UUID | None = None
    sent_seq = 0

    async def connect(self) -> None:
        if not self.authenticated():
            await self.reject(CLOSE_UNAUTHENTICATED, "not_authenticated", "Log in, or connect with ?token=<key>.")
            return
        try:
            chat_id = uuid.UUID(self.scope["url_route"]["kwargs"]["chat_id"])
        except ValueError:
            await self.reject(CLOSE_NOT_FOUND, "chat_not_found", "No chat has this id.")
            return
        after_seq = parse_qs(self.scope.get("query_string", b"").decode()).get("after_seq", [None])[0]
        if after_seq is not None and not (after_seq.isdigit() and len(after_seq) < 12):
            await self.reject(CLOSE_BAD_REQUEST, "invalid_after_seq", "after_seq must be a whole number >= 0.")
            return
        # Join first, read second: a message committed in between arrives live and is dropped as seen,
        # instead of falling between the read and the join.
        await self.channel_layer.group_add(chat_group(chat_id), self.channel_name)
        self.chat_id = chat_id
        last_seq = await database_sync_to_async(chat_last_seq)(chat_id)
        if last_seq is None:
            await self.reject(CLOSE_NOT_FOUND, "chat_not_found", "No chat has this id.")
            return
        # Accept only now, subscribed and positioned: once the client sees the socket open, every message
        # it posts after that is one it will receive.
        await self.accept()
        if after_seq is None:
            self.sent_seq = last_seq  # live only: start after what exists now
        else:
            self.sent_seq = min(int(after_seq), last_seq)
            await self.send_from_database(up_to_seq=last_seq)

    async def disconnect(self, code: int) -> None:
        if self.chat_id is not None:
            await self.channel_layer.group_discard(chat_group(self.chat_id), self.channel_name)

    async def chat_event(self, message: dict[str, Any]) -> None:
        envelope = message["envelope"]
        if envelope["event_type"] == "chat.deleted":
            await self.send_json({"type": "chat.deleted", "event_id": envelope["event_id"], "chat_id": envelope["chat_id"]})
            await self.close(code=CLOSE_CHAT_DELETED)
            return
        if envelope["event_type"] != "message.created":
            return
        seq = envelope["payload"]["seq"]
        if seq <= self.sent_seq:
            return  # replayed already, or a repeated delivery
        if seq - self.sent_seq > MAX_LAG or self.backlog() > MAX_LAG:
            await self.send_error(
                "lagging", "This connection fell behind; reconnect with after_seq to resume.", after_seq=self.sent_seq
            )
            await self.close(code=CLOSE_LAGGING)
            return
        if seq > self.sent_seq + 1:
            await self.send_from_database(up_to_seq=seq - 1)  # frames were lost upstream: fill the gap
        await self.send_message_frame(envelope["payload"], envelope["event_id"])

    async def send_from_database(self, up_to_seq: int) -> None:
        while self.sent_seq < up_to_seq:
            page = await database_sync_to_async(messages_after)(self.chat_id, self.sent_seq, up_to_seq, REPLAY_PAGE)
            if not page:
                return  # the chat was deleted meanwhile; its chat.deleted frame is on the way
            for message in page:
                await self.send_message_frame(message, event_id=None)

    async def send_message_frame(self, message: dict[str, Any], event_id: str | None) -> None:
        await self.send_json(
            {"type": "message.created", "event_id": event_id, "chat_id": message["chat_id"], "message": message}
        )
        self.sent_seq = message["seq"]
