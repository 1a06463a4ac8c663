"""Per-user socket counts and chats' presence belong to live web processes: a process that dies takes its
sockets with it, out of its users' counts and out of the presence of its chats.

The processes here are real (`manage.py serve`, killed with SIGKILL or stopped with SIGTERM), and so is
Redis. A SIGKILLed process's lease is shortened to 2 s so that its expiry is seen in a test; a stopped
one's is made longer than the test, so only its release at exit can free the sockets.
"""

import asyncio
import json
import signal
import uuid

import pytest
import websockets
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.live.presence import Presence
from chats.live.socket_slots import LEASE_PREFIX, ProcessLease, SocketSlots
from chats.runtime.embedded import free_port, start_redis
from messaging_domain.commands import CreateChatCommand
from tests.helpers import serving

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CAP = {"CHAT_WS_MAX_SOCKETS_PER_USER": "2"}


async def lobby(port: int, token: str):
    return await websockets.connect(f"ws://127.0.0.1:{port}/ws/chats/?token={token}", proxy=None)


async def refused_with(ws) -> int | None:
    try:
        await asyncio.wait_for(ws.recv(), 5)
        await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


async def open_socket_when_admitted(port: int, token: str, within: float) -> None:
    """Wait until the server admits one more socket (it answers a ping), retrying while it refuses."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < within:
        ws = await lobby(port, token)
        try:
            await ws.send('{"type": "ping"}')
            if "pong" in await asyncio.wait_for(ws.recv(), 5):
                await ws.close()
                return
        except ConnectionClosed:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"no socket admitted within {within}s")


@pytest.fixture
def token(ann):
    return Token.objects.create(user=ann).key


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_the_sockets_of_a_web_process_that_dies_leave_the_users_count(stop, token, channel_layer, worker, settings):
    first_port, second_port = free_port(), free_port()
    lease = "2" if stop == signal.SIGKILL else "600"
    first = await asyncio.to_thread(serving, worker, first_port, CHAT_WS_SOCKET_LEASE_SECONDS=lease, **CAP)
    held = [await lobby(first_port, token) for _ in range(2)]
    for ws in held:
        await ws.send('{"type": "ping"}')
        assert "pong" in await asyncio.wait_for(ws.recv(), 5)
    assert await refused_with(await lobby(first_port, token)) == 4429

    first.process.send_signal(stop)
    await asyncio.to_thread(first.process.wait, 20)
    await asyncio.to_thread(serving, worker, second_port, **CAP)
    await open_socket_when_admitted(second_port, token, within=15)


async def next_frame(ws, within: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def test_the_users_of_a_killed_web_process_leave_the_chats_presence_once(ann, token, make_user, channel_layer, worker):
    chat = await asyncio.to_thread(
        mediator.handle_command, CreateChatCommand(title="Lunch", owner=participant_of(ann)))
    bob_token = (await asyncio.to_thread(Token.objects.create, user=await asyncio.to_thread(make_user, "bob"))).key
    doomed_port, live_port = free_port(), free_port()
    quick = {"CHAT_WS_PRESENCE_SWEEP_SECONDS": "0.5"}
    doomed = await asyncio.to_thread(serving, worker, doomed_port, CHAT_WS_SOCKET_LEASE_SECONDS="2", **quick)
    await asyncio.to_thread(serving, worker, live_port, **quick)

    observer = await websockets.connect(f"ws://127.0.0.1:{live_port}/ws/chats/{chat.id}/?token={token}", proxy=None)
    assert (await next_frame(observer))["online"] == ["ann"]
    bobs = await websockets.connect(f"ws://127.0.0.1:{doomed_port}/ws/chats/{chat.id}/?token={bob_token}", proxy=None)
    assert (await next_frame(bobs))["online"] == ["ann", "bob"]
    assert await next_frame(observer) == {"type": "presence.joined", "chat_id": str(chat.id), "username": "bob"}

    doomed.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(doomed.process.wait, 20)

    # within its lease (2 s) and a sweep (0.5 s) of the live process
    assert await next_frame(observer, 10) == {"type": "presence.left", "chat_id": str(chat.id), "username": "bob"}
    with pytest.raises(asyncio.TimeoutError):
        await next_frame(observer, 2)  # once
    await observer.close()


async def test_counting_drops_the_sockets_of_a_process_whose_lease_is_gone(ann, channel_layer, settings):
    settings.CHAT_WS_MAX_SOCKETS_PER_USER = 2
    dead, alive = SocketSlots(ProcessLease()), SocketSlots(ProcessLease())
    assert [await dead.take(ann.pk), await dead.take(ann.pk)] == [True, True]
    assert await alive.take(ann.pk) is False

    await dead.redis().delete(LEASE_PREFIX + dead.lease.process_id)  # as when its process died
    assert await alive.take(ann.pk) is True
    assert await alive.count(ann.pk) == 1
    await alive.give_back(ann.pk)
    assert await alive.count(ann.pk) == 0


async def test_a_redis_restart_does_not_fail_the_next_admission_on_a_stale_connection(ann, settings):
    port = free_port()
    redis = start_redis(port=port)
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        slots = SocketSlots(ProcessLease())
        assert await slots.take(ann.pk) is True  # its pooled connection now points at this server
        redis.stop()
        redis = start_redis(port=port)
        assert await slots.take(ann.pk) is True
    finally:
        redis.stop()


async def test_an_admission_that_gives_up_on_a_paused_redis_leaves_nothing_counted(ann, settings):
    """A socket refused because Redis did not answer in time (chats.live.consumers, the admission deadline) is
    counted out of the user's sockets and the chat's presence once Redis answers the commands it was waiting on."""
    port = free_port()
    redis = start_redis(port=port)
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        slots = SocketSlots(ProcessLease())
        presence = Presence(slots)
        chat_id = uuid.uuid4()
        assert await slots.take(ann.pk) is True  # connected, the lease held: what follows waits on the commands
        redis.process.send_signal(signal.SIGSTOP)
        try:
            for admission in (slots.take(ann.pk), presence.enter(chat_id, "ann")):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await admission
        finally:
            redis.process.send_signal(signal.SIGCONT)
        client = slots.redis()
        for _ in range(100):
            if await slots.count(ann.pk) == 1 and not await client.hgetall(presence.key(chat_id)):
                break
            await asyncio.sleep(0.05)
        assert (await slots.count(ann.pk), await client.hgetall(presence.key(chat_id))) == (1, {})
    finally:
        redis.stop()
