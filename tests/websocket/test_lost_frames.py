"""Frames the channel layer loses are filled from the database, even the last one of a quiet chat.

Nothing is delivered through the channel layer here: every message and the deletion are committed
through the mediator and their live frames "lost", so what the client receives comes from the position
checks of chats.live.positions alone.
"""

import pytest
from asgiref.sync import sync_to_async

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.live.socket_slots import SocketSlots
from messaging_domain.commands import (
    CreateMessageCommand,
    DeleteChatCommand,
)
from tests.websocket.test_consumers import assert_closed_with, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def quick_checks(settings):
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 0.2


@sync_to_async
def post(chat, user, text: str) -> None:
    mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=text, author=participant_of(user)))


async def test_the_lost_last_message_of_a_quiet_chat_still_reaches_the_subscriber(ann, chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await post(chat, ann, "the only message")
    await post(chat, ann, "and the last one")

    frames = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert [(f["type"], f["message"]["seq"], f["message"]["text"]) for f in frames] == [
        ("message.created", 1, "the only message"), ("message.created", 2, "and the last one")]
    assert await communicator.receive_nothing(timeout=1)  # checks go on, and send nothing twice
    await communicator.disconnect()


async def test_a_subscriber_whose_chat_deleted_frame_was_lost_is_closed_with_4410(ann, chat, token, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await sync_to_async(mediator.handle_command)(DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))

    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {"type": "chat.deleted", "event_id": None, "chat_id": str(chat.id)}
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4410}


@pytest.mark.parametrize("after_seq", ["²", "١٢", "-1", "1e3", "123456789012"])
async def test_an_after_seq_that_is_not_ascii_digits_is_closed_with_4400_and_its_slot_given_back(
    after_seq, ann, chat, token, channel_layer
):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq={after_seq}")
    await assert_closed_with(communicator, 4400, "invalid_after_seq")
    await communicator.wait()
    assert await SocketSlots().count(ann.pk) == 0
