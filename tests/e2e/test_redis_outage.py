"""A web process whose Redis is away (restarting) refuses new sockets with 1013 "try again later", through
the real daphne, instead of failing their handshake with HTTP 500; once Redis is back it admits them."""

import asyncio
import json
import signal
import time

import pytest
import websockets
from redis import StrictRedis
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed

from chats.runtime.embedded import free_port, start_redis
from tests.helpers import serving

pytestmark = pytest.mark.django_db(transaction=True)


async def first_frame_and_close(url: str) -> tuple[dict, int | None]:
    async with websockets.connect(url, proxy=None) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return frame, closed.rcvd.code if closed.rcvd else None
    return frame, None


async def pong(url: str) -> dict:
    """The answer to a ping: a pong, or the error frame of a socket refused before it could ask."""
    async with websockets.connect(url, proxy=None) as ws:
        try:
            await ws.send('{"type": "ping"}')
        except ConnectionClosed:
            pass  # refused already: its error frame is still there to read
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_a_socket_opened_while_redis_is_away_is_told_to_come_back_with_1013(ann, worker):
    token = Token.objects.create(user=ann).key
    redis_port, web_port = free_port(), free_port()
    redis = start_redis(port=redis_port)
    try:
        web = serving(worker, web_port, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
        url = f"ws://127.0.0.1:{web_port}/ws/chats/?token={token}"
        assert asyncio.run(pong(url)) == {"type": "pong"}

        redis.stop()
        frame, code = asyncio.run(first_frame_and_close(url))
        assert (frame["type"], frame["code"], code) == ("error", "unavailable", 1013)

        redis = start_redis(port=redis_port)
        # As the page does: on 1013 come back; within a few tries the socket is admitted again.
        for _ in range(20):
            try:
                answer = asyncio.run(pong(url))
            except websockets.exceptions.InvalidStatus as refused:
                raise AssertionError(f"{refused}\n{web.output()[-4000:]}") from None
            if answer["type"] == "pong":
                break
            assert (answer["type"], answer["code"]) == ("error", "unavailable")
            time.sleep(0.25)
        assert answer == {"type": "pong"}
    finally:
        redis.stop()


def test_a_socket_waiting_on_a_redis_that_does_not_answer_is_told_1013_and_takes_nothing(ann, worker):
    """A paused Redis (SIGSTOP: it accepts connections and never answers) must not hold a handshake until daphne
    drops the connection with no HTTP answer: admission gives up after CHAT_WS_ADMISSION_SECONDS with 1013, and
    what the refused socket's admission took (its socket slot) is given back once Redis answers again."""
    token = Token.objects.create(user=ann).key
    redis_port, web_port = free_port(), free_port()
    redis = start_redis(port=redis_port)
    try:
        serving(worker, web_port, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", CHAT_WS_ADMISSION_SECONDS="1")
        url = f"ws://127.0.0.1:{web_port}/ws/chats/?token={token}"
        assert asyncio.run(pong(url)) == {"type": "pong"}

        redis.process.send_signal(signal.SIGSTOP)
        try:
            frame, code = asyncio.run(first_frame_and_close(url))
        finally:
            redis.process.send_signal(signal.SIGCONT)
        assert (frame["type"], frame["code"], code) == ("error", "unavailable", 1013)

        assert asyncio.run(pong(url)) == {"type": "pong"}
        counts, key = StrictRedis(port=redis_port), f"chat:ws-sockets:{ann.pk}"
        deadline = time.monotonic() + 10
        while counts.hgetall(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts.hgetall(key) == {}  # the refused socket's slot, taken once Redis woke, was given back
    finally:
        redis.stop()
