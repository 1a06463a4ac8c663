"""The websocket consumers through Channels' WebsocketCommunicator, on the real Redis channel layer."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chatproject.asgi import application
from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.live import consumers
from chats.models import OutboxEvent
from chats.pipeline.wire import LOBBY_GROUP, chat_group, group_message
from messaging_domain.commands import (
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
)

pytestmark = [
    pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_position_checks"),
]


@sync_to_async
def post(chat, user, count: int = 1) -> list[dict]:
    """Post messages through the mediator; return the envelopes their events put in the outbox."""
    for n in range(count):
        mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=f"message {n}", author=participant_of(user)))
    rows = OutboxEvent.objects.filter(chat_id=chat.id, event_type="message.created").order_by("-id")[:count]
    return [row.envelope for row in reversed(rows)]


@sync_to_async
def latest_envelope(chat_id, event_type: str) -> dict:
    return OutboxEvent.objects.filter(chat_id=chat_id, event_type=event_type).latest("id").envelope


async def connect(path: str, headers=None, presence: bool = True) -> WebsocketCommunicator:
    """A connected socket. A chat stream's first frame, its `presence`, is read here (and checked) unless
    `presence` is False: the tests that follow are about what comes after it."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await communicator.connect()
    assert connected
    if presence and path.count("/") > 3:  # /ws/chats/<id>/
        first = await communicator.receive_output(timeout=5)
        frame = json.loads(first["text"]) if first["type"] == "websocket.send" else {}
        if frame.get("type") == "presence":
            assert isinstance(frame["online"], list) and frame["chat_id"] in path
        else:  # refused: its error frame and close are the test's to read
            communicator.output_queue._queue.appendleft(first)
    return communicator


async def receive_past_presence(communicator) -> dict:
    """The next frame that is not a presence.joined. A socket opened just after another user's may still receive
    that user's presence.joined (it was published before this socket subscribed, but the pub/sub layer hands it
    to the process's group members as it arrives back from Redis), on top of seeing them in its presence frame."""
    while (frame := await communicator.receive_json_from(timeout=5))["type"] == "presence.joined":
        pass
    return frame


async def deliver(layer, group: str, envelope: dict) -> None:
    """What forward_events does with an event (tested on its own in tests/forwarder/)."""
    await layer.group_send(group, group_message(envelope))


async def seqs_received(communicator, count: int) -> list[tuple[int, bool]]:
    frames = [await communicator.receive_json_from(timeout=5) for _ in range(count)]
    assert {frame["type"] for frame in frames} == {"message.created"}
    return [(frame["message"]["seq"], frame["event_id"] is not None) for frame in frames]


async def assert_closed_with(communicator, code: int, error: str | None = None) -> dict | None:
    """The socket closes with `code`, after an error frame with code `error` if one is given; returns that frame."""
    frame = None
    if error is not None:
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["type"], frame["code"]) == ("error", error)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": code}
    return frame


# --- who may connect -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/chats/", "/ws/chats/{chat}/"])
async def test_a_client_without_credentials_is_closed_with_4401_not_authenticated(path, chat, channel_layer):
    communicator = await connect(path.format(chat=chat.id))
    await assert_closed_with(communicator, 4401, "not_authenticated")


@pytest.mark.parametrize("path", ["/ws/chats/?token=not-a-token", "/ws/chats/{chat}/?token=not-a-token"])
async def test_a_client_with_an_unknown_token_is_closed_with_4401_invalid_token(path, chat, channel_layer):
    communicator = await connect(path.format(chat=chat.id))
    frame = await assert_closed_with(communicator, 4401, "invalid_token")
    assert "invalid or revoked" in frame["message"]


async def test_a_token_of_a_deactivated_user_is_closed_with_4401_invalid_token(ann, token, chat, channel_layer):
    ann.is_active = False
    await sync_to_async(ann.save)()
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await assert_closed_with(communicator, 4401, "invalid_token")


@pytest.mark.parametrize("credential", ["token", "session"])
async def test_a_socket_whose_user_is_not_found_within_the_admission_deadline_is_told_1013(
    credential, ann, token, chat, channel_layer, client, settings, caplog
):
    """The deadline starts as the handshake does, in the middleware: a user looked up too slowly (the database
    busy) gets the same answer as a socket whose Redis is slow (tests/e2e/test_redis_outage.py), before daphne's
    handshake timeout. A deadline of 0 has passed by the time the lookup's thread answers."""
    await sync_to_async(client.force_login)(ann)
    settings.CHAT_WS_ADMISSION_SECONDS = 0
    if credential == "token":
        communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    else:
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        communicator = await connect(f"/ws/chats/{chat.id}/", headers=[(b"cookie", cookie)])
    frame = await assert_closed_with(communicator, 1013, "unavailable")
    assert "reconnect" in frame["message"]
    assert "its user not found in time" in caplog.text  # refused by the middleware: no consumer was made


async def test_a_session_cookie_authenticates_a_socket(ann, chat, channel_layer, client):
    await sync_to_async(client.force_login)(ann)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = await connect(f"/ws/chats/{chat.id}/", headers=[(b"cookie", cookie)])
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


@pytest.mark.parametrize("chat_id", ["6f1c7b1e-1111-4a4a-8a8a-000000000000", "not-a-uuid"])
async def test_an_unknown_or_malformed_chat_is_closed_with_4404(chat_id, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat_id}/?token={token}")
    await assert_closed_with(communicator, 4404, "chat_not_found")


@pytest.mark.parametrize("after_seq", ["-1", "abc", "1.5", "99999999999999"])
async def test_a_malformed_after_seq_is_closed_with_4400(after_seq, chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq={after_seq}")
    await assert_closed_with(communicator, 4400, "invalid_after_seq")


async def test_a_page_from_another_site_cannot_open_a_socket(chat, token, channel_layer):
    communicator = WebsocketCommunicator(
        application, f"/ws/chats/{chat.id}/?token={token}", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_a_page_from_an_allowed_host_may_open_a_socket(chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}", headers=[(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000")])
    await communicator.disconnect()


# --- what a client may send ------------------------------------------------------------------------


async def test_ping_gets_pong_and_bad_frames_get_an_error_without_closing(chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    bad_frames = [("{not json", "invalid_json"), ('["ping"]', "unknown_type"), ('{"type": "shout"}', "unknown_type")]
    for text, code in bad_frames:
        await communicator.send_to(text_data=text)
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["type"], frame["code"]) == ("error", code) and frame["message"]
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from(timeout=5))["code"] == "invalid_frame"
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
    await communicator.disconnect()


# --- what a client receives ------------------------------------------------------------------------


async def test_after_seq_replays_the_missed_messages_then_live_ones_follow(ann, chat, token, channel_layer):
    await post(chat, ann, 5)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq=2")
    assert await seqs_received(communicator, 3) == [(3, False), (4, False), (5, False)]  # replayed: no event id

    [live] = await post(chat, ann)
    await deliver(channel_layer, chat_group(chat.id), live)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {
        "type": "message.created", "event_id": live["event_id"], "chat_id": str(chat.id), "version": live["version"],
        "message": live["payload"],
    }
    await communicator.disconnect()


async def test_without_after_seq_or_after_version_only_new_messages_are_sent(ann, chat, token, channel_layer):
    old = await post(chat, ann, 2)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await deliver(channel_layer, chat_group(chat.id), old[-1])  # a late repeat of an old event
    [new] = await post(chat, ann)
    await deliver(channel_layer, chat_group(chat.id), new)
    assert await seqs_received(communicator, 1) == [(3, True)]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_events_delivered_twice_or_already_replayed_reach_the_client_once(ann, chat, token, channel_layer):
    replayed = await post(chat, ann, 3)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq=0")
    assert [seq for seq, _ in await seqs_received(communicator, 3)] == [1, 2, 3]
    live = await post(chat, ann, 2)
    for envelope in [*replayed, live[0], live[0], live[1], replayed[1], live[1]]:
        await deliver(channel_layer, chat_group(chat.id), envelope)
    assert await seqs_received(communicator, 2) == [(4, True), (5, True)]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.parametrize("query, last_is_live", [
    ("", False),  # by version: the fill reads every change after the last sent, the live one included
    ("&after_seq=0", True),  # by seq: the fill stops below the live frame, which follows it
], ids=["by_version", "by_seq"])
async def test_a_gap_in_live_frames_is_filled_from_the_database_in_order(query, last_is_live, ann, chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}{query}")
    envelopes = await post(chat, ann, 4)
    await deliver(channel_layer, chat_group(chat.id), envelopes[0])
    await deliver(channel_layer, chat_group(chat.id), envelopes[3])  # 2 and 3 were lost upstream
    assert await seqs_received(communicator, 4) == [(1, True), (2, False), (3, False), (4, last_is_live)]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_replay_longer_than_a_page_arrives_whole_and_in_order(ann, chat, token, channel_layer, monkeypatch):
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 4)
    await post(chat, ann, 10)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq=1")
    assert [seq for seq, _ in await seqs_received(communicator, 9)] == list(range(2, 11))
    await communicator.disconnect()


@pytest.mark.parametrize("query, resume_from", [("", "after_version"), ("&after_seq=2", "after_seq")])
async def test_a_client_too_far_behind_is_told_to_resume_and_closed_with_4408(
    query, resume_from, ann, chat, token, channel_layer, monkeypatch
):
    monkeypatch.setattr(consumers, "MAX_LAG", 3)
    await post(chat, ann, 2)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}{query}")
    envelopes = await post(chat, ann, 5)
    await deliver(channel_layer, chat_group(chat.id), envelopes[-1])  # 4 frames missing: more than MAX_LAG
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"]) == ("error", "lagging")
    other = ({"after_seq", "after_version"} - {resume_from}).pop()
    assert frame[resume_from] == 2 and other not in frame  # where it was when it fell behind, in its own terms
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4408}


async def test_deleting_the_chat_sends_chat_deleted_and_closes_with_4410(ann, chat, token, channel_layer):
    await post(chat, ann, 2)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await sync_to_async(mediator.handle_command)(DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))
    deleted = await latest_envelope(chat.id, "chat.deleted")
    await deliver(channel_layer, chat_group(chat.id), deleted)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {"type": "chat.deleted", "event_id": deleted["event_id"], "chat_id": str(chat.id), "version": 2}
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4410}


async def test_the_lobby_sees_chats_created_and_deleted(ann, token, channel_layer):
    lobby = await connect(f"/ws/chats/?token={token}")
    chat = await sync_to_async(mediator.handle_command)(CreateChatCommand(title="Dinner", owner=participant_of(ann)))
    await sync_to_async(mediator.handle_command)(DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))
    created = await latest_envelope(chat.id, "chat.created")
    deleted = await latest_envelope(chat.id, "chat.deleted")
    await deliver(channel_layer, LOBBY_GROUP, created)
    await deliver(channel_layer, LOBBY_GROUP, deleted)

    assert await lobby.receive_json_from(timeout=5) == {
        "type": "chat.created", "event_id": created["event_id"], "chat_id": str(chat.id), "version": 0,
        "chat": created["payload"],
    }
    assert await lobby.receive_json_from(timeout=5) == {
        "type": "chat.deleted", "event_id": deleted["event_id"], "chat_id": str(chat.id), "version": 0,
    }
    await lobby.send_json_to({"type": "ping"})
    assert json.loads((await lobby.receive_from(timeout=5))) == {"type": "pong"}
    await lobby.disconnect()
