"""A web process whose Redis is away (restarting) refuses new sockets with 1013 "try again later", through
the real daphne, instead of failing their handshake with HTTP 500; once Redis is back it admits them."""

import asyncio
import json
import time

import pytest
import websockets
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
