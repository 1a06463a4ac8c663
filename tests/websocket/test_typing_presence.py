"""Typing and presence on chat streams (issue 12): ephemeral frames over the channel layer only.

Typing: others on the chat get `{"type": "typing", "chat_id", "username"}`, never the sender's own sockets, at
most one per user per chat every CHAT_WS_TYPING_INTERVAL_SECONDS and CHAT_WS_TYPING_PER_CHAT_PER_SECOND per
chat per second; the frame budget still closes a flood. Presence: a `presence` frame first, then
`presence.joined` / `presence.left` when a user's first socket opens / last closes, counted in Redis across web
processes; a dead process's sockets leave at the next sweep after its lease is gone.

Real Redis (channel layer, socket counts, presence) and PostgreSQL. A web process other than the test's is a
second Presence on its own ProcessLease; it "dies" when its lease key is deleted and it sweeps nothing.
"""

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels import consumer as consumer_module
from django.apps import apps
from rest_framework.authtoken.models import Token

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.live import presence as presence_module
from chats.live.presence import Presence
from chats.live.socket_slots import LEASE_PREFIX, ProcessLease, SocketSlots
from chats.models import Chat, OutboxEvent
from messaging_domain.commands import AddMemberCommand, CreateChatCommand
from tests.websocket.test_consumers import (
    assert_closed_with,
    connect,
    receive_past_presence,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def quiet_checks(settings):
    """No position checks (they have their own tests); sweeps only where a test asks for them."""
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 3600
    settings.CHAT_WS_PRESENCE_SWEEP_SECONDS = 3600


@pytest.fixture
def tokens(ann, token, make_user) -> dict[str, str]:
    """A token for ann and for each of bob, cid, dan and zed."""
    keys = {"ann": token}
    for name in ("bob", "cid", "dan", "zed"):
        keys[name] = Token.objects.create(user=make_user(name)).key
    return keys


async def stream(chat, key: str, query: str = ""):
    """A chat socket, and the `online` of its first frame (which must be its presence)."""
    communicator = await connect(f"/ws/chats/{chat.id}/?token={key}{query}", presence=False)
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "presence" and first["chat_id"] == str(chat.id), first
    assert first.keys() == {"type", "chat_id", "online"}
    return communicator, first["online"]


async def received(communicator, seconds: float = 0.5) -> list[dict]:
    """Every frame that arrives within `seconds` (until a quiet `seconds`)."""
    frames = []
    while not await communicator.receive_nothing(timeout=seconds):  # (a receive that times out ends the socket)
        output = await communicator.receive_output(timeout=1)
        assert output["type"] == "websocket.send", output
        frames.append(json.loads(output["text"]))
    return frames


def without_early_presence(frames: list[dict], online: list[str]) -> list[dict]:
    """The frames but a presence.joined of someone its presence frame already listed: a socket opened right after
    another user's may get that user's presence.joined too (published before it subscribed, handed to the
    process's group members when it comes back from Redis)."""
    return [f for f in frames if not (f["type"] == "presence.joined" and f["username"] in online)]


def typing(chat, username: str) -> dict:
    return {"type": "typing", "chat_id": str(chat.id), "username": username}


def presence_change(chat, kind: str, username: str) -> dict:
    return {"type": f"presence.{kind}", "chat_id": str(chat.id), "username": username}


async def at_the_start_of_a_second() -> None:
    """Wait until the typing gate's clock (time.monotonic) is early in a second, so a burst stays in one."""
    while time.monotonic() % 1 > 0.3:
        await asyncio.sleep(1 - time.monotonic() % 1 + 0.01)


@sync_to_async
def row_counts() -> dict[str, int]:
    counts = {model._meta.label: model.objects.count() for model in apps.get_models()}
    counts["chat versions"] = sum(Chat.objects.values_list("version", flat=True))
    return counts


# --- typing --------------------------------------------------------------------------------------------


async def test_others_get_typing_but_never_the_sender_nor_the_senders_other_sockets(chat, tokens, channel_layer):
    anns, _ = await stream(chat, tokens["ann"])
    cids, _ = await stream(chat, tokens["cid"])
    bob_phone, online = await stream(chat, tokens["bob"])
    bob_laptop, _ = await stream(chat, tokens["bob"])
    assert online == ["ann", "bob", "cid"]
    await received(anns)  # their presence.joined frames
    await received(cids)

    await bob_phone.send_json_to({"type": "typing"})

    assert await received(anns) == [typing(chat, "bob")]
    assert await received(cids) == [typing(chat, "bob")]
    for own in (bob_phone, bob_laptop):
        assert without_early_presence(await received(own), online) == []
    for communicator in (anns, cids, bob_phone, bob_laptop):
        await communicator.disconnect()


async def test_a_second_typing_within_two_seconds_is_dropped_and_one_after_them_goes_out(chat, tokens, channel_layer):
    anns, _ = await stream(chat, tokens["ann"])
    bobs, _ = await stream(chat, tokens["bob"])
    await received(anns)
    started = time.monotonic()

    await bobs.send_json_to({"type": "typing"})
    await bobs.send_json_to({"type": "typing"})
    assert await received(anns) == [typing(chat, "bob")]

    await asyncio.sleep(max(0.0, 2.1 - (time.monotonic() - started)))
    await bobs.send_json_to({"type": "typing"})
    assert await received(anns) == [typing(chat, "bob")]
    await bobs.disconnect()
    await anns.disconnect()


async def test_at_most_the_configured_number_of_typing_frames_go_out_per_chat_per_second(chat, tokens, channel_layer, settings):
    settings.CHAT_WS_TYPING_PER_CHAT_PER_SECOND = 2
    anns, _ = await stream(chat, tokens["ann"])
    typists = {name: (await stream(chat, tokens[name]))[0] for name in ("bob", "cid", "dan")}
    await received(anns)

    await at_the_start_of_a_second()
    for communicator in typists.values():
        await communicator.send_json_to({"type": "typing"})
    frames = await received(anns, 0.3)
    assert len(frames) == 2 and all(f["type"] == "typing" for f in frames)
    [dropped] = set(typists) - {f["username"] for f in frames}

    await asyncio.sleep(1 - time.monotonic() % 1 + 0.05)  # the next second: the dropped typist may type again
    await typists[dropped].send_json_to({"type": "typing"})
    assert await received(anns) == [typing(chat, dropped)]
    for communicator in (anns, *typists.values()):
        await communicator.disconnect()


async def test_a_flood_of_typing_frames_is_closed_with_4429_by_the_frame_budget(chat, tokens, channel_layer, settings):
    settings.CHAT_WS_FRAME_BURST = 5
    settings.CHAT_WS_FRAMES_PER_SECOND = 0.01
    anns, _ = await stream(chat, tokens["ann"])
    bobs, _ = await stream(chat, tokens["bob"])
    await received(anns)

    for _ in range(6):
        await bobs.send_json_to({"type": "typing"})

    frame = await receive_past_presence(bobs)
    assert (frame["type"], frame["code"]) == ("error", "rate_limited")
    assert await bobs.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    assert await received(anns) == [typing(chat, "bob")]  # the other four were dropped silently
    await anns.disconnect()


async def test_a_typing_frame_names_its_sender_and_its_sockets_chat_whatever_it_claims(ann, chat, tokens, channel_layer):
    other = await sync_to_async(mediator.handle_command)(CreateChatCommand(title="Other", owner=participant_of(ann)))
    cids, _ = await stream(chat, tokens["cid"])
    elsewhere, _ = await stream(other, tokens["dan"])
    bobs, _ = await stream(chat, tokens["bob"])
    await received(cids)

    await bobs.send_json_to({"type": "typing", "username": "ann", "chat_id": str(other.id)})

    assert await received(cids) == [typing(chat, "bob")]
    assert await received(elsewhere) == []
    for communicator in (cids, elsewhere, bobs):
        await communicator.disconnect()


async def test_the_lobby_takes_no_typing_frames(tokens, channel_layer):
    lobby = await connect(f"/ws/chats/?token={tokens['ann']}")
    await lobby.send_json_to({"type": "typing"})
    frame = await lobby.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"]) == ("error", "unknown_type")
    await lobby.send_json_to({"type": "ping"})
    assert await lobby.receive_json_from(timeout=5) == {"type": "pong"}
    await lobby.disconnect()


async def test_typing_and_presence_write_nothing_to_the_database_or_the_outbox(chat, tokens, channel_layer):
    before = await row_counts()
    outbox = await sync_to_async(OutboxEvent.objects.count)()
    sockets = [(await stream(chat, tokens[name]))[0] for name in ("ann", "bob", "bob", "cid")]
    for communicator in sockets:
        await communicator.send_json_to({"type": "typing"})
    assert any(f["type"] == "typing" for f in await received(sockets[0]))
    for communicator in sockets:
        await communicator.disconnect()
    await asyncio.sleep(0.3)

    assert await row_counts() == before
    assert await sync_to_async(OutboxEvent.objects.count)() == outbox  # nothing for the relay to send to Kafka


async def test_frames_from_clients_never_wait_for_the_processs_database_thread(chat, tokens, channel_layer, monkeypatch):
    """Channels hops every message to the sync thread (the one that runs the views) to close stale database
    connections; typing and ping touch no database, so a burst of typists must not queue hops in front of posts."""
    hops = []

    async def counted_hop():
        hops.append(1)

    monkeypatch.setattr(consumer_module, "aclose_old_connections", counted_hop)
    anns, _ = await stream(chat, tokens["ann"])
    bobs, _ = await stream(chat, tokens["bob"])
    await received(anns)
    await received(bobs)  # an early presence.joined of ann, if any
    connected_with = len(hops)
    assert connected_with >= 2  # the handshakes did hop (the patch is in the path it replaces)

    for _ in range(3):
        await bobs.send_json_to({"type": "typing"})
    await bobs.send_json_to({"type": "ping"})
    assert await bobs.receive_json_from(timeout=5) == {"type": "pong"}
    assert await received(anns) == [typing(chat, "bob")]

    assert len(hops) == connected_with
    await bobs.disconnect()
    await anns.disconnect()


# --- presence ------------------------------------------------------------------------------------------


async def test_the_first_frame_lists_who_is_online_sorted_each_user_once(chat, tokens, channel_layer):
    sockets = []
    for name, expected in [
        ("zed", ["zed"]), ("bob", ["bob", "zed"]), ("zed", ["bob", "zed"]), ("ann", ["ann", "bob", "zed"]),
    ]:
        communicator, online = await stream(chat, tokens[name])
        assert online == expected
        sockets.append(communicator)
    for communicator in sockets:
        await communicator.disconnect()
    communicator, online = await stream(chat, tokens["cid"])
    assert online == ["cid"]
    await communicator.disconnect()


async def test_presence_joined_goes_out_for_a_users_first_socket_and_left_for_their_last(chat, tokens, channel_layer):
    cids, _ = await stream(chat, tokens["cid"])
    first, _ = await stream(chat, tokens["ann"])
    assert await received(cids) == [presence_change(chat, "joined", "ann")]
    second, online = await stream(chat, tokens["ann"])
    assert online == ["ann", "cid"]
    assert await received(cids) == []  # a second socket: ann was online already

    await first.disconnect()
    assert await received(cids) == []  # one of two closed: still online
    dans, online = await stream(chat, tokens["dan"])
    assert online == ["ann", "cid", "dan"]
    assert await received(cids) == [presence_change(chat, "joined", "dan")]

    await second.disconnect()
    assert await received(cids) == [presence_change(chat, "left", "ann")]
    assert without_early_presence(await received(dans), online) == [presence_change(chat, "left", "ann")]
    await dans.disconnect()
    await cids.disconnect()


def online_list(chat, *usernames: str) -> dict:
    return {"type": "presence", "chat_id": str(chat.id), "online": sorted(usernames)}


async def test_past_the_crowd_size_joins_and_leaves_go_out_as_one_fresh_list_per_interval(chat, tokens, channel_layer, settings):
    """N users arriving at once would otherwise cost N²/2 frames; a crowd gets a list per interval instead."""
    settings.CHAT_WS_PRESENCE_CROWD = 2
    settings.CHAT_WS_PRESENCE_REFRESH_SECONDS = 1.0
    anns, _ = await stream(chat, tokens["ann"])
    bobs, _ = await stream(chat, tokens["bob"])
    assert await received(anns) == [presence_change(chat, "joined", "bob")]  # two online: not a crowd yet
    await received(bobs)

    arrivals = [(await stream(chat, tokens[name]))[0] for name in ("cid", "dan", "zed")]  # well within a second

    everyone = online_list(chat, "ann", "bob", "cid", "dan", "zed")
    assert await received(anns, 1.5) == [everyone]  # one frame for three arrivals, no presence.joined
    assert await received(bobs, 0.5) == [everyone]
    assert everyone in await received(arrivals[0], 0.5)  # the newcomers too (the list is about nobody)

    for communicator in arrivals[1:]:
        await communicator.disconnect()
    assert await received(anns, 1.5) == [online_list(chat, "ann", "bob", "cid")]  # one frame for two leaving
    await arrivals[0].disconnect()  # cid leaves a chat of three: counting her, a crowd still
    assert await received(anns, 1.5) == [online_list(chat, "ann", "bob")]
    await bobs.disconnect()  # two online counting bob: not a crowd, announced one by one again
    assert await received(anns) == [presence_change(chat, "left", "bob")]
    await anns.disconnect()


async def test_a_refused_socket_is_never_online(ann, tokens, channel_layer):
    chat = await sync_to_async(mediator.handle_command)(
        CreateChatCommand(title="Secret", owner=participant_of(ann), visibility="private"))
    await sync_to_async(mediator.handle_command)(
        AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    anns, _ = await stream(chat, tokens["ann"])

    stranger = await connect(f"/ws/chats/{chat.id}/?token={tokens['cid']}")
    await assert_closed_with(stranger, 4404, "chat_not_found")
    malformed = await connect(f"/ws/chats/{chat.id}/?token={tokens['bob']}&after_version=x")
    await assert_closed_with(malformed, 4400, "invalid_after_version")
    await stranger.wait()
    await malformed.wait()

    assert await received(anns) == []
    bobs, online = await stream(chat, tokens["bob"])
    assert online == ["ann", "bob"]
    await bobs.disconnect()
    await anns.disconnect()


def another_process() -> Presence:
    """The presence of another web process, on a lease of its own."""
    return Presence(SocketSlots(ProcessLease()))


def dead_process() -> Presence:
    """Another web process that will die: it sweeps nothing (the test deletes its lease to kill it)."""
    dead = another_process()
    dead._serve = lambda chat_id, change: None
    return dead


async def kill(process: Presence) -> None:
    await process.slots.redis().delete(LEASE_PREFIX + process.slots.lease.process_id)


async def test_the_sockets_of_a_dead_web_process_leave_presence_once_at_the_next_sweep(
    chat, tokens, channel_layer, settings
):
    settings.CHAT_WS_PRESENCE_SWEEP_SECONDS = 0.2
    settings.CHAT_WS_SOCKET_LEASE_SECONDS = 600  # no lease lapses or is renewed during the test
    anns, _ = await stream(chat, tokens["ann"])  # served here: this process sweeps the chat
    dead, other_live = dead_process(), another_process()  # and so does other_live, which serves eve
    assert await dead.enter(chat.id, "dan") == (True, ["ann", "dan"])
    await dead.announce(chat.id, "dan", "presence.joined", online=2)  # as dan's socket there did
    assert await other_live.enter(chat.id, "eve") == (True, ["ann", "dan", "eve"])
    await other_live.announce(chat.id, "eve", "presence.joined", online=3)
    bobs, online = await stream(chat, tokens["bob"])
    assert online == ["ann", "bob", "dan", "eve"]
    assert await received(anns) == [presence_change(chat, "joined", name) for name in ("dan", "eve", "bob")]
    assert without_early_presence(await received(bobs), online) == []

    await kill(dead)

    # 1 s of quiet after it: five sweeps by each of two live processes, one announcement
    assert await received(anns, 1.0) == [presence_change(chat, "left", "dan")]
    assert await received(bobs, 1.0) == [presence_change(chat, "left", "dan")]
    cids, online = await stream(chat, tokens["cid"])
    assert online == ["ann", "bob", "cid", "eve"]
    assert await other_live.leave(chat.id, "eve") is True
    for communicator in (anns, bobs, cids):
        await communicator.disconnect()


async def test_a_user_with_a_socket_in_a_live_process_stays_online_when_another_process_dies(
    chat, tokens, channel_layer, settings
):
    settings.CHAT_WS_PRESENCE_SWEEP_SECONDS = 0.2
    settings.CHAT_WS_SOCKET_LEASE_SECONDS = 600
    anns, _ = await stream(chat, tokens["ann"])
    dead = dead_process()
    assert await dead.enter(chat.id, "bob") == (True, ["ann", "bob"])
    await dead.announce(chat.id, "bob", "presence.joined", online=2)
    bobs, online = await stream(chat, tokens["bob"])  # not bob's first socket: no second presence.joined
    assert online == ["ann", "bob"]
    assert await received(anns) == [presence_change(chat, "joined", "bob")]

    await kill(dead)
    assert await received(anns, 1.0) == []

    await bobs.disconnect()
    assert await received(anns) == [presence_change(chat, "left", "bob")]
    await anns.disconnect()


async def test_a_socket_opening_after_a_process_died_announces_the_users_that_left_with_it(chat, tokens, channel_layer):
    anns, _ = await stream(chat, tokens["ann"])  # sweeps an hour apart: only the next socket can notice
    dead = dead_process()
    await dead.enter(chat.id, "dan")
    await dead.announce(chat.id, "dan", "presence.joined", online=2)
    assert await received(anns) == [presence_change(chat, "joined", "dan")]

    await kill(dead)
    bobs, online = await stream(chat, tokens["bob"])

    assert online == ["ann", "bob"]
    assert await received(anns) == [presence_change(chat, "left", "dan"), presence_change(chat, "joined", "bob")]
    await bobs.disconnect()
    await anns.disconnect()


async def test_a_user_stays_online_while_their_socket_is_open_however_long_since_anyone_joined(
    chat, tokens, channel_layer, settings, monkeypatch
):
    monkeypatch.setattr(presence_module, "EXPIRES", 1)  # a day, shortened: the presence hash's time to live
    settings.CHAT_WS_PRESENCE_SWEEP_SECONDS = 0.2  # sweeps go on all along
    anns, _ = await stream(chat, tokens["ann"])
    await asyncio.sleep(2.5)

    bobs, online = await stream(chat, tokens["bob"])

    assert online == ["ann", "bob"]
    await bobs.disconnect()
    await anns.disconnect()
