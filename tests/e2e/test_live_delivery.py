"""End to end: two web processes sharing a port, relay_outbox and forward_events as real processes; clients
over HTTP and websockets.

A message takes the whole path: HTTP -> database + outbox -> relay -> Kafka -> forwarder -> Redis channel
layer -> daphne's consumers -> the websocket client. With two `serve` processes on one port, a message is
often posted through one process and delivered by the other, as with one web process per core.
"""

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from chats.runtime.embedded import free_port
from tests.helpers import http_json, serving, started

pytestmark = pytest.mark.django_db(transaction=True)

RECV_TIMEOUT = 30  # seconds any one frame may take once the forwarder is live
FIRST_EVENT_TIMEOUT = 60  # the forwarder joins its consumer group a few seconds after it connects
PASSWORD = "correct-horse-battery-9"


@dataclass
class Stack:
    """The three processes of the service, running on the test database, Kafka topic and Redis."""

    port: int
    web: list

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, Any]:
        return http_json(f"http://127.0.0.1:{self.port}", method, path, body, token, timeout=RECV_TIMEOUT)

    def register(self, username: str) -> str:
        status, body = self.call("POST", "/api/auth/register/", {"username": username, "password": PASSWORD})
        assert status == 201, body
        return body["token"]

    def ws(self, path: str, **query: Any) -> websockets.connect:
        query_string = "&".join(f"{key}={value}" for key, value in query.items())
        return websockets.connect(f"ws://127.0.0.1:{self.port}{path}?{query_string}", proxy=None)


@pytest.fixture
def stack(kafka, channel_layer, worker):
    port = free_port()
    web = [serving(worker, port), serving(worker, port)]
    relay = worker("relay_outbox")
    forwarder = worker("forward_events")
    started(relay, lambda: "connected to Kafka" in relay.output(), "the relay to connect to Kafka")
    started(forwarder, lambda: "connected to Kafka" in forwarder.output(), "the forwarder to connect to Kafka")
    yield Stack(port, web)
    exits = {"relay_outbox": relay.stop(), "forward_events": forwarder.stop()}
    for process in web:
        process.stop()
    assert exits == {"relay_outbox": 0, "forward_events": 0}, relay.output() + forwarder.output()


def text_of(seq: int) -> str:
    return f"message number {seq}"


def post_messages(stack: Stack, chat_id: str, token: str, seqs: range) -> None:
    for seq in seqs:
        status, body = stack.call("POST", f"/api/chats/{chat_id}/messages/", {"text": text_of(seq)}, token)
        assert (status, body["seq"]) == (201, seq), body


async def receive_frames(ws, count: int, timeout: float = RECV_TIMEOUT) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(count)]


async def open_stream(stack: Stack, chat_id: str, token: str, online: list[str] | None = None, **query: Any):
    """A chat stream, past its first frame: `presence` with who is on the chat (`online`, when given)."""
    ws = await stack.ws(f"/ws/chats/{chat_id}/", token=token, **query)
    [presence] = await receive_frames(ws, 1)
    assert (presence["type"], presence["chat_id"]) == ("presence", chat_id), presence
    if online is not None:
        assert presence["online"] == online, presence
    return ws


@contextlib.asynccontextmanager
async def chat_stream(stack: Stack, chat_id: str, token: str, online: list[str] | None = None, **query: Any):
    ws = await open_stream(stack, chat_id, token, online, **query)
    try:
        yield ws
    finally:
        await ws.close()


async def frames_until_closed(ws) -> tuple[list[dict], int | None]:
    """Every frame until the server closes the connection, and the close code it sent."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


def assert_messages(frames: list[dict], seqs: range, *, live: bool) -> None:
    """message.created frames for exactly `seqs`, in order; live ones carry their event id, replayed ones null.
    The chat's only changes are its owner's messages, so each one's version is its seq."""
    assert [frame["type"] for frame in frames] == ["message.created"] * len(seqs)
    assert [frame["message"]["seq"] for frame in frames] == list(seqs)
    assert [(frame["version"], frame["message"]["version"]) for frame in frames] == [(seq, seq) for seq in seqs]
    assert [frame["message"]["text"] for frame in frames] == [text_of(seq) for seq in seqs]
    assert [frame["event_id"] is not None for frame in frames] == [live] * len(seqs)


def test_three_clients_see_every_message_once_in_order_and_a_reconnect_resumes_without_a_gap(stack):
    token = stack.register("ann")

    async def scenario():
        async def post(seqs: range) -> None:
            await asyncio.to_thread(post_messages, stack, chat_id, token, seqs)

        async def post_and_receive(seqs: range, clients: list) -> list[list[dict]]:
            _, *received = await asyncio.gather(post(seqs), *(receive_frames(ws, len(seqs)) for ws in clients))
            return received

        async with stack.ws("/ws/chats/", token=token) as lobby:
            status, chat = await asyncio.to_thread(stack.call, "POST", "/api/chats/", {"title": "Lunch"}, token)
            assert status == 201, chat
            chat_id = chat["id"]
            # The first event through the whole path also tells that the forwarder has joined its group.
            [created] = await receive_frames(lobby, 1, timeout=FIRST_EVENT_TIMEOUT)
            assert (created["type"], created["chat_id"], created["chat"]["title"]) == ("chat.created", chat_id, "Lunch")
            assert created["event_id"] is not None

            # One user's sockets: each is told ann is here; none hears of ann's own arrival (presence.joined).
            one, two, three = [await open_stream(stack, chat_id, token, ["ann"]) for _ in range(3)]
            for frames in await post_and_receive(range(1, 51), [one, two, three]):
                assert_messages(frames, range(1, 51), live=True)

            await three.close()
            for frames in await post_and_receive(range(51, 61), [one, two]):
                assert_messages(frames, range(51, 61), live=True)

            three = await open_stream(stack, chat_id, token, ["ann"], after_seq=50)
            assert_messages(await receive_frames(three, 10), range(51, 61), live=False)
            for frames in await post_and_receive(range(61, 66), [one, two, three]):
                assert_messages(frames, range(61, 66), live=True)

            status, _ = await asyncio.to_thread(stack.call, "DELETE", f"/api/chats/{chat_id}/", None, token)
            assert status == 204
            # Nothing but chat.deleted follows seq 65 on any client: no message arrived twice.
            for ws in (one, two, three):
                frames, code = await frames_until_closed(ws)
                assert [(frame["type"], frame["chat_id"]) for frame in frames] == [("chat.deleted", chat_id)]
                assert frames[0]["version"] == 65  # the chat's last
                assert code == 4410
            [deleted] = await receive_frames(lobby, 1)
            assert (deleted["type"], deleted["chat_id"]) == ("chat.deleted", chat_id)

    asyncio.run(scenario())
    # The kernel spread the ~70 connections over both web processes (the chance that one got them all is
    # 2**-69), so messages posted through one process reached sockets held by the other.
    assert all("] \"POST /api/chats/" in web.output() or "] \"WSCONNECT /ws/chats/" in web.output()
               for web in stack.web), [web.output()[-2000:] for web in stack.web]


def test_a_client_without_a_valid_token_is_closed_with_4401_and_one_for_an_unknown_chat_with_4404(stack):
    token = stack.register("ann")

    async def close_code(path: str, **query: Any) -> tuple[list[str], int | None]:
        async with stack.ws(path, **query) as ws:
            frames, code = await frames_until_closed(ws)
        return [frame.get("code") for frame in frames], code

    async def scenario():
        assert await close_code("/ws/chats/") == (["not_authenticated"], 4401)
        assert await close_code(f"/ws/chats/{uuid.uuid4()}/") == (["not_authenticated"], 4401)
        assert await close_code("/ws/chats/", token="not-a-token") == (["invalid_token"], 4401)
        assert await close_code(f"/ws/chats/{uuid.uuid4()}/", token=token) == (["chat_not_found"], 4404)
        assert await close_code("/ws/chats/not-a-uuid/", token=token) == (["chat_not_found"], 4404)

    asyncio.run(scenario())
