"""What crosses daphne: frames of any size out, a size limit on frames in, request bodies (chunked or not) and
JSON nested too deeply, through the real web process (`manage.py serve`).

`WebsocketCommunicator` and `APIClient` bypass daphne, autobahn and twisted, which is where these limits
live (../shared/FACTS.md, "Learned the hard way"), so every test here but one talks to a real server.
"""

import asyncio
import http.client
import json
import socket
import threading
import uuid

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from chats.runtime.embedded import free_port
from tests.api.support import assert_error
from tests.e2e.test_live_delivery import (
    FIRST_EVENT_TIMEOUT,
    RECV_TIMEOUT,
    Stack,
    chat_stream,
    frames_until_closed,
    receive_frames,
)
from tests.helpers import serving, started

pytestmark = pytest.mark.django_db(transaction=True)

LONG_TEXTS = {
    "cyrillic": "ж" * 4096,  # 2 bytes in UTF-8, 6 as a \u escape
    "emoji": "😀" * 4096,  # 4 bytes in UTF-8, 12 as two \u escapes
    "ascii": "a" * 4096,
}


@pytest.fixture
def stack(kafka, channel_layer, worker):
    """One web process, the relay and the forwarder: the whole path of a message."""
    port = free_port()
    web = serving(worker, port)
    relay, forwarder = worker("relay_outbox"), worker("forward_events")
    started(relay, lambda: "connected to Kafka" in relay.output(), "the relay to connect to Kafka")
    started(forwarder, lambda: "connected to Kafka" in forwarder.output(), "the forwarder to connect to Kafka")
    yield Stack(port, [web])
    for process in (relay, forwarder, web):
        process.stop()


@pytest.fixture
def web(channel_layer, worker):
    """One web process alone, for what only the web process decides (frames in, request bodies)."""
    port = free_port()
    yield Stack(port, [serving(worker, port)])


def nested_json(size: int) -> str:
    return "[" * size


# --- frames out: any size, byte-exact -------------------------------------------------------------------


def test_4096_character_messages_in_cyrillic_emoji_and_ascii_reach_every_subscriber_live_and_on_resume_through_daphne(
    stack,
):
    token = stack.register("ann")

    async def scenario():
        async with stack.ws("/ws/chats/", token=token) as lobby:
            status, chat = await asyncio.to_thread(stack.call, "POST", "/api/chats/", {"title": "Long"}, token)
            assert status == 201, chat
            await receive_frames(lobby, 1, timeout=FIRST_EVENT_TIMEOUT)  # the forwarder is live
        async with chat_stream(stack, chat["id"], token) as one, chat_stream(stack, chat["id"], token) as two:
            for seq, text in enumerate(LONG_TEXTS.values(), start=1):
                status, posted = await asyncio.to_thread(
                    stack.call, "POST", f"/api/chats/{chat['id']}/messages/", {"text": text}, token
                )
                assert (status, posted["seq"], posted["text"]) == (201, seq, text)
            for ws in (one, two):
                live = [await asyncio.wait_for(ws.recv(), RECV_TIMEOUT) for _ in LONG_TEXTS]
                assert [json.loads(frame)["message"]["text"] for frame in live] == list(LONG_TEXTS.values())
                # Non-ASCII travels as UTF-8, not as \u escapes: the frame holds the text as it is.
                assert all(text in frame for frame, text in zip(live, LONG_TEXTS.values()))
        for query in ({"after_seq": 0}, {"after_version": 0}):
            async with chat_stream(stack, chat["id"], token, **query) as resumed:
                raw = [await asyncio.wait_for(resumed.recv(), RECV_TIMEOUT) for _ in LONG_TEXTS]
                replayed = [json.loads(frame) for frame in raw]
                assert [(frame["type"], frame["event_id"], frame["message"]["seq"], frame["version"])
                        for frame in replayed] == [("message.created", None, seq, seq) for seq in (1, 2, 3)]
                assert [frame["message"]["text"] for frame in replayed] == list(LONG_TEXTS.values())
                assert all(text in frame for frame, text in zip(raw, LONG_TEXTS.values()))

    asyncio.run(scenario())


def test_a_batched_replay_of_4096_character_messages_comes_in_batches_under_the_byte_limit_byte_exact_through_daphne(
    web,
):
    """Autobahn's size limits hold for what the server sends too (a message over them closes the socket 1011):
    a replay's batches stay under CHAT_WS_BATCH_BYTES, whatever the texts' bytes per character."""
    token = web.register("ann")
    status, chat = web.call("POST", "/api/chats/", {"title": "Long, batched"}, token)
    assert status == 201, chat
    texts = list(LONG_TEXTS.values()) * 4  # ~115 KB of frames: more than one batch
    for text in texts:
        status, posted = web.call("POST", f"/api/chats/{chat['id']}/messages/", {"text": text}, token)
        assert status == 201, posted

    async def scenario():
        async with chat_stream(web, chat["id"], token, after_version=0, batch=1) as ws:
            raw = []
            while sum(len(json.loads(each)["frames"]) for each in raw) < len(texts):
                raw.append(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)) == {"type": "pong"}  # still open
        return raw

    raw = asyncio.run(scenario())
    assert len(raw) > 1 and all(json.loads(each)["type"] == "batch" for each in raw)
    assert max(len(each.encode()) for each in raw) <= settings.CHAT_WS_BATCH_BYTES == 65536
    frames = [frame for each in raw for frame in json.loads(each)["frames"]]
    assert [(frame["type"], frame["version"]) for frame in frames] == [
        ("message.created", version) for version in range(1, len(texts) + 1)]
    assert [frame["message"]["text"] for frame in frames] == texts
    assert all(text in "".join(raw) for text in LONG_TEXTS.values())  # UTF-8 as it is, not \u escapes


# --- frames in: at most CHAT_WS_MAX_FRAME_BYTES, then close 1009 ----------------------------------------


def ping_of(size: int) -> str:
    """A ping frame of exactly `size` bytes in UTF-8, padded with 2-byte characters (and one ASCII if odd)."""
    frame = '{"type": "ping", "pad": ""}'
    room = size - len(frame)
    pad = "é" * (room // 2) + "x" * (room % 2)
    frame = '{"type": "ping", "pad": "' + pad + '"}'
    assert len(frame.encode()) == size
    return frame


def test_a_client_frame_of_4096_bytes_is_answered_and_one_of_4097_bytes_is_closed_with_1009_through_daphne(web):
    token = web.register("ann")
    assert settings.CHAT_WS_MAX_FRAME_BYTES == 4096

    async def scenario():
        async with web.ws("/ws/chats/", token=token) as ws:
            await ws.send(ping_of(4096))
            assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)) == {"type": "pong"}
            await ws.send(ping_of(4097))
            assert await frames_until_closed(ws) == ([], 1009)

    asyncio.run(scenario())


def test_a_frame_of_json_nested_4000_deep_gets_an_invalid_json_error_frame_and_the_socket_stays_open(web):
    token = web.register("ann")

    async def scenario():
        async with web.ws("/ws/chats/", token=token) as ws:
            await ws.send(nested_json(4000))
            frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
            assert (frame["type"], frame["code"]) == ("error", "invalid_json")
            await ws.send('{"type": "ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)) == {"type": "pong"}

    asyncio.run(scenario())


# --- request bodies ------------------------------------------------------------------------------------


def chunked_post(port: int, path: str, chunks, headers: dict[str, str]) -> tuple[int, dict]:
    """A POST with `Transfer-Encoding: chunked` (http.client chooses it for an iterable body without a length)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=RECV_TIMEOUT)
    try:
        connection.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json", **headers},
                           encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_valid_chunked_post_creates_the_message(web):
    token = web.register("ann")
    status, chat = web.call("POST", "/api/chats/", {"title": "Chunks"}, token)
    assert status == 201, chat
    body = json.dumps({"text": "привет, in three chunks"}, ensure_ascii=False).encode()
    status, message = chunked_post(web.port, f"/api/chats/{chat['id']}/messages/", [body[:5], body[5:9], body[9:]],
                                   {"Authorization": f"Token {token}"})
    assert (status, message["seq"], message["text"]) == (201, 1, "привет, in three chunks")
    assert web.call("GET", f"/api/chats/{chat['id']}/messages/", token=token)[1]["results"] == [message]


class RawResponse:
    """An HTTP response read off a raw socket: the status, the headers (lower-cased names), the body."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}

    def json(self) -> dict:
        return json.loads(self.body)


def send_while_reading(port: int, head: bytes, body_parts) -> RawResponse:
    """Sends `head` then `body_parts` from a thread while reading the response until the server closes:
    a server that answers before the body ends is heard, whatever the sender is doing then."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT)

    def send() -> None:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server stopped reading: expected once it has answered

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    sender.join(RECV_TIMEOUT)
    return RawResponse(received)


def assert_too_large(response: RawResponse) -> None:
    assert response.status == 413, response.body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["code"] == "request_too_large"
    assert set(response.json()) == {"error"} and response.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_refused_with_413_while_it_streams_and_the_web_process_still_serves(web):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunk = b"x" * 65536
    chunks = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16 * limit // len(chunk)))  # 16 times the limit
    head = (b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # unauthenticated: the limit applies before anything else
    assert_too_large(send_while_reading(web.port, head, chunks))
    assert web.web[0].process.poll() is None
    assert web.call("GET", "/api/health/")[0] == 200
    web.register("ann")  # and a POST with a body after it


def test_a_declared_content_length_over_the_limit_is_refused_with_413_before_the_body_is_read(web):
    head = (b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))
    assert_too_large(send_while_reading(web.port, head, []))  # no body sent: the answer cannot wait for it
    assert web.call("GET", "/api/health/")[0] == 200


def test_a_body_of_json_nested_10_kb_deep_is_a_400_parse_error(client, make_client):
    response = client.post("/api/chats/", data=nested_json(10_000), content_type="application/json")
    assert_error(response, 400, "parse_error")
    response = make_client().post("/api/auth/register/", data=nested_json(10_000), content_type="application/json")
    assert_error(response, 400, "parse_error")


def raw_handshake(port: int, target: bytes) -> tuple[bytes, bytes]:
    """A websocket handshake for `target` sent as raw bytes, as no client library would send a byte that is not
    ASCII; returns the HTTP status line and what follows the response's head (the first frames)."""
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT) as raw:
        raw.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n" % port)
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 4:
            chunk = raw.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, frames = received.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], frames


def test_a_query_string_with_bytes_that_are_not_utf8_is_refused_cleanly_through_daphne(web, ann):
    """Raw, such a byte is refused by daphne itself (400); percent-encoded, it reads as U+FFFD: an unknown token
    (close 4401 `invalid_token`) or a bad `after_seq` (4400), never a 500."""
    token = Token.objects.create(user=ann).key
    assert raw_handshake(web.port, b"/ws/chats/?token=\xff")[0] == b"HTTP/1.1 400 Bad Request"
    status, frames = raw_handshake(web.port, b"/ws/chats/?token=%FF")
    assert status.startswith(b"HTTP/1.1 101"), status
    assert b'"invalid_token"' in frames
    chat_path = b"/ws/chats/%s/?token=%s&after_seq=%%FF" % (str(uuid.uuid4()).encode(), token.encode())
    status, frames = raw_handshake(web.port, chat_path)
    assert status.startswith(b"HTTP/1.1 101"), status
    assert b'"invalid_after_seq"' in frames
