"""`?batch=1`: frames that are ready together (queued behind each other, a replay's page, an error before its
close) go out as one `{"type": "batch", "frames": [...]}` message of at most CHAT_WS_BATCH_BYTES; a lone frame
goes out as itself, at once. Through daphne: tests/e2e/test_wire.py."""

import asyncio
import json

import pytest

from chats.live import consumers
from chats.pipeline.wire import LOBBY_GROUP, chat_group
from tests.websocket.test_consumers import (
    assert_closed_with,
    connect,
    deliver,
    latest_envelope,
    post,
)

pytestmark = [
    pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_position_checks"),
]


async def messages_until_quiet(communicator) -> list[str]:
    """The text of every websocket message sent until none comes for 0.5 s."""
    texts = []
    while not await communicator.receive_nothing(timeout=0.5):
        texts.append((await communicator.receive_output(timeout=5))["text"])
    return texts


def unwrapped(texts: list[str]) -> list[dict]:
    """The frames a batching client handles, in order."""
    frames = []
    for text in texts:
        frame = json.loads(text)
        frames.extend(frame["frames"] if frame["type"] == "batch" else [frame])
    return frames


async def test_a_replay_comes_as_one_batch_of_the_same_frames_in_the_same_order(ann, chat, token, channel_layer):
    await post(chat, ann, 10)
    one_by_one = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    expected = await messages_until_quiet(one_by_one)
    batching = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0&batch=1")
    batched = await messages_until_quiet(batching)

    assert len(expected) == 10 and len(batched) == 1
    assert json.loads(batched[0])["type"] == "batch"
    assert unwrapped(batched) == [json.loads(text) for text in expected]
    assert [frame["version"] for frame in unwrapped(batched)] == list(range(1, 11))
    for communicator in (one_by_one, batching):
        await communicator.disconnect()


@pytest.mark.parametrize("query", ["after_version=0", "after_seq=0"])
async def test_a_batch_is_never_over_the_byte_limit_and_the_frames_split_between_batches_stay_whole_and_in_order(
    query, ann, chat, token, channel_layer, settings, monkeypatch
):
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 7)  # pages and batches end at different frames
    settings.CHAT_WS_BATCH_BYTES = 1500
    await post(chat, ann, 30)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&{query}&batch=1")
    texts = await messages_until_quiet(communicator)

    assert [frame["message"]["seq"] for frame in unwrapped(texts)] == list(range(1, 31))
    assert len(texts) > 5
    assert max(len(text.encode()) for text in texts) <= 1500
    await communicator.disconnect()


async def test_live_frames_queued_behind_a_busy_dispatch_go_out_together_and_a_lone_one_as_itself(
    ann, chat, token, channel_layer, monkeypatch
):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&batch=1")
    envelopes = await post(chat, ann, 4)
    await deliver(channel_layer, chat_group(chat.id), envelopes[0])
    alone = json.loads(await communicator.receive_from(timeout=5))
    assert (alone["type"], alone["message"]["seq"]) == ("message.created", 1)  # not wrapped, not held back

    held = asyncio.Event()
    forward_change = consumers.ChatStreamConsumer.forward_change

    async def slow_forward_change(self, message):
        await held.wait()  # a dispatch that takes a while: what arrives meanwhile queues behind it
        await forward_change(self, message)

    monkeypatch.setattr(consumers.ChatStreamConsumer, "forward_change", slow_forward_change)
    for envelope in envelopes[1:]:
        await deliver(channel_layer, chat_group(chat.id), envelope)
    await asyncio.sleep(0.3)
    assert await communicator.receive_nothing(timeout=0.1)
    held.set()

    batch = json.loads(await communicator.receive_from(timeout=5))
    assert batch["type"] == "batch"
    assert [(frame["message"]["seq"], frame["event_id"]) for frame in batch["frames"]] == [
        (2, envelopes[1]["event_id"]), (3, envelopes[2]["event_id"]), (4, envelopes[3]["event_id"])]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_error_frame_made_in_a_batch_goes_out_before_the_close(ann, chat, token, channel_layer, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_LAG", 3)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&batch=1")
    envelopes = await post(chat, ann, 5)
    await deliver(channel_layer, chat_group(chat.id), envelopes[-1])  # 4 behind: more than MAX_LAG
    frame = await assert_closed_with(communicator, 4408, "lagging")
    assert frame["after_version"] == 0


async def test_the_lobby_batches_too_and_a_lone_frame_is_not_wrapped(ann, token, chat, channel_layer):
    communicator = await connect(f"/ws/chats/?token={token}&batch=1")
    envelope = await latest_envelope(chat.id, "chat.created")
    await deliver(channel_layer, LOBBY_GROUP, envelope)
    frame = json.loads(await communicator.receive_from(timeout=5))
    assert (frame["type"], frame["chat_id"]) == ("chat.created", str(chat.id))
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/chats/", "/ws/chats/{chat}/"])
@pytest.mark.parametrize("batch", ["2", "yes", "", "true", "01"])
async def test_a_batch_other_than_0_or_1_is_closed_with_4400_invalid_batch(path, batch, chat, token, channel_layer):
    communicator = await connect(f"{path.format(chat=chat.id)}?token={token}&batch={batch}")
    frame = await assert_closed_with(communicator, 4400, "invalid_batch")
    assert "batch" in frame["message"]
