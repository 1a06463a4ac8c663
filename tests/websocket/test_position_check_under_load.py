"""The position check fills what the channel layer lost (test_lost_frames.py); a socket that is only slow, its frames
queued in this process, is left to them. Reading the database for every such socket of a busy chat made a busy web
process slower the busier it got (a third of its time at 100 posts/s into a chat of 100 subscribers)."""

import asyncio

import pytest

from chats.live import consumers
from chats.pipeline.wire import chat_group
from tests.websocket.test_consumers import connect, deliver, post, seqs_received

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_socket_with_frames_queued_here_is_not_caught_up_from_the_database(
    ann, chat, token, channel_layer, settings, monkeypatch
):
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 0.2
    reads = []
    read_changes = consumers.changes_after
    monkeypatch.setattr(consumers, "changes_after", lambda *args: reads.append(args) or read_changes(*args))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    slow_socket = asyncio.Event()
    forward_change = consumers.ChatStreamConsumer.forward_change

    async def held_forward_change(self, message):
        await slow_socket.wait()
        await forward_change(self, message)

    monkeypatch.setattr(consumers.ChatStreamConsumer, "forward_change", held_forward_change)

    for envelope in await post(chat, ann, 3):
        await deliver(channel_layer, chat_group(chat.id), envelope)
    await asyncio.sleep(1.0)  # five checks see the chat three changes ahead of the socket, two frames queued here
    slow_socket.set()

    assert await seqs_received(communicator, 3) == [(1, True), (2, True), (3, True)]  # each live, none replayed
    assert reads == []
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
