"""Typing and presence through two real web processes (daphne) on two ports sharing one Redis, with no relay,
no forwarder and no Kafka running: both travel over the channel layer only, and are counted across processes.
A web process SIGKILLed takes its sockets out of presence (presence.left to the others) and out of the
per-user socket count within its lease plus one sweep (shortened here to 3 s and 1 s); a live one gives back
what each socket held when it closes, however many close at once.
"""

import asyncio
import json
import time

import pytest
import websockets
from django.contrib.auth import get_user_model

from chats.live.socket_slots import SocketSlots
from chats.models import OutboxEvent
from chats.runtime.embedded import free_port
from tests.e2e.test_live_delivery import (
    RECV_TIMEOUT,
    Stack,
    frames_until_closed,
    open_stream,
    receive_frames,
)
from tests.helpers import serving

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_S, SWEEP_S = 3, 1
FAST_LEASES = {"CHAT_WS_SOCKET_LEASE_SECONDS": str(LEASE_S), "CHAT_WS_PRESENCE_SWEEP_SECONDS": str(SWEEP_S),
               "CHAT_WS_MAX_SOCKETS_PER_USER": "2"}


@pytest.fixture
def two_webs(channel_layer, worker):
    """Two web processes, each on a port of its own (so a test says which holds which socket)."""
    ports = [free_port(), free_port()]
    return [(Stack(port, [serving(worker, port, **FAST_LEASES)])) for port in ports]


async def assert_quiet(ws) -> None:
    """Nothing is queued for this socket: a ping's pong is the next frame."""
    await ws.send('{"type": "ping"}')
    assert await receive_frames(ws, 1) == [{"type": "pong"}]


def test_typing_and_presence_cross_web_processes_without_kafka_and_a_killed_process_leaves_presence(two_webs):
    a, b = two_webs
    ann, bob = a.register("ann"), b.register("bob")
    status, chat = a.call("POST", "/api/chats/", {"title": "Typing"}, ann)
    assert status == 201, chat
    outbox_before = OutboxEvent.objects.count()

    async def scenario():
        anns = await open_stream(a, chat["id"], ann, ["ann"])
        bobs = await open_stream(b, chat["id"], bob, ["ann", "bob"])  # ann is online, on the other process
        assert await receive_frames(anns, 1) == [{"type": "presence.joined", "chat_id": chat["id"], "username": "bob"}]

        await bobs.send('{"type": "typing"}')
        assert await receive_frames(anns, 1) == [{"type": "typing", "chat_id": chat["id"], "username": "bob"}]
        await assert_quiet(bobs)  # never echoed to the typist
        await bobs.send('{"type": "typing"}')  # within 2 s of the last: dropped silently
        await bobs.send('{"type": "typing", "ignored": [1, 2]}')
        await assert_quiet(bobs)
        await assert_quiet(anns)

        # ann's second socket, on bob's process: not her first, so nobody hears of it; she is online once.
        anns_second = await open_stream(b, chat["id"], ann, ["ann", "bob"])
        await assert_quiet(bobs)
        await anns_second.send('{"type": "typing"}')
        assert await receive_frames(bobs, 1) == [{"type": "typing", "chat_id": chat["id"], "username": "ann"}]
        await assert_quiet(anns)  # not to the typist's other sockets either

        # ann holds 2 sockets, the cap: a third is refused.
        async with a.ws(f"/ws/chats/{chat['id']}/", token=ann) as third:
            frames, code = await frames_until_closed(third)
        assert (code, [f.get("code") for f in frames]) == (4429, ["too_many_sockets"])

        killed_at = time.monotonic()
        b.web[0].process.kill()
        b.web[0].process.wait()
        # bob's only socket died with the process: within the lease and a sweep, ann (on the survivor) hears
        # he left. ann herself stays online (her socket on the survivor), so no presence.left for her.
        [left] = await receive_frames(anns, 1, timeout=LEASE_S + SWEEP_S + RECV_TIMEOUT)
        assert left == {"type": "presence.left", "chat_id": chat["id"], "username": "bob"}
        assert time.monotonic() - killed_at < LEASE_S + 2 * SWEEP_S + 5
        await assert_quiet(anns)

        # ... and ann's socket that died with it no longer counts against her cap: a new one is admitted.
        replacement = await open_stream(a, chat["id"], ann, ["ann"])
        await assert_quiet(replacement)
        for ws in (anns, replacement, bobs, anns_second):
            await ws.close()

    asyncio.run(scenario())
    assert OutboxEvent.objects.count() == outbox_before  # typing and presence never reach the outbox


def test_a_flood_of_typing_frames_is_dropped_past_the_rate_and_then_closed_by_the_frame_budget_through_daphne(two_webs):
    a, _ = two_webs
    ann, bob = a.register("ann"), a.register("bob")
    status, chat = a.call("POST", "/api/chats/", {"title": "Flood"}, ann)
    assert status == 201, chat

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{a.port}/ws/chats/{chat['id']}/?token={ann}", proxy=None) as anns:
            await receive_frames(anns, 1)  # presence
            bobs = await open_stream(a, chat["id"], bob, ["ann", "bob"])
            await receive_frames(anns, 1)  # presence.joined bob
            for _ in range(40):  # past the frame budget's burst of 20
                try:
                    await bobs.send('{"type": "typing"}')
                except websockets.exceptions.ConnectionClosed:
                    break
            frames, code = await frames_until_closed(bobs)
            assert code == 4429
            assert [f.get("code") for f in frames if f["type"] == "error"] == ["rate_limited"]
            assert all(f["type"] != "typing" for f in frames)  # never echoed
            # ann heard bob type once (the gate: one per user per 2 s), then that he left.
            got = [json.loads(await asyncio.wait_for(anns.recv(), RECV_TIMEOUT)) for _ in range(2)]
            assert [(f["type"], f["username"]) for f in got] == [("typing", "bob"), ("presence.left", "bob")]
            await assert_quiet(anns)

    asyncio.run(scenario())


@pytest.fixture
def roomy_web(channel_layer, worker):
    """One web process that lets a user hold many sockets."""
    port = free_port()
    return Stack(port, [serving(worker, port, CHAT_WS_MAX_SOCKETS_PER_USER="1000")])


def test_a_user_whose_300_sockets_close_at_once_leaves_presence_and_gives_every_socket_back(roomy_web):
    web = roomy_web
    ann, bob, cid = (web.register(name) for name in ("ann", "bob", "cid"))
    status, chat = web.call("POST", "/api/chats/", {"title": "Tabs"}, ann)
    assert status == 201, chat
    ann_id = get_user_model().objects.get(username="ann").pk

    async def scenario() -> list[str]:
        problems = []
        bobs = await open_stream(web, chat["id"], bob, ["bob"])
        gate = asyncio.Semaphore(50)

        async def ann_socket():
            async with gate:
                return await open_stream(web, chat["id"], ann)

        anns = await asyncio.gather(*(ann_socket() for _ in range(300)))
        # ann's first socket announced her once; her other 299 sockets nothing.
        assert await receive_frames(bobs, 1) == [{"type": "presence.joined", "chat_id": chat["id"], "username": "ann"}]
        await assert_quiet(bobs)
        assert await SocketSlots().count(ann_id) == 300

        await asyncio.gather(*(ws.close() for ws in anns))  # a browser with 300 tabs quits
        try:
            assert await receive_frames(bobs, 1) == [
                {"type": "presence.left", "chat_id": chat["id"], "username": "ann"}]
        except TimeoutError:
            problems.append("bob never got presence.left for ann")
        online = json.loads(await asyncio.wait_for(
            (cids := await web.ws(f"/ws/chats/{chat['id']}/", token=cid)).recv(), RECV_TIMEOUT))["online"]
        if online != ["bob", "cid"]:
            problems.append(f"a new socket is told {online[:3]} are online")
        deadline = time.monotonic() + 10
        while (held := await SocketSlots().count(ann_id)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if held:
            problems.append(f"ann still holds {held} sockets in the per-user count, none open")
        for ws in (bobs, cids):
            await ws.close()
        return problems

    problems = asyncio.run(scenario())
    lines = [line for line in web.web[0].output().splitlines() if "could not" in line]
    assert not problems and not lines, (problems, len(lines), lines[:2])
