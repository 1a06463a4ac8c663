"""What an idle chat socket holds in its web process (issue 13, target 4): its consumer's attributes in a dict
whose names every socket shares, and no queue, task or Redis subscription of its own (chats.live.layer)."""

import asyncio
import gc
import inspect
import sys
import weakref

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from chats.live import entry
from chats.live.consumers import ChatStreamConsumer, LobbyConsumer
from chats.live.entry import user_for_token
from chats.pipeline.wire import chat_group
from tests.websocket.test_consumers import connect

pytestmark = pytest.mark.django_db(transaction=True)


def sockets_of(kind: type) -> list:
    return [receiver for receiver in get_channel_layer()._get_layer().channels.values() if isinstance(receiver, kind)]


@pytest.mark.asyncio
async def test_an_idle_chat_socket_has_no_queue_task_or_subscription_of_its_own(chat, token):
    lobby = await connect(f"/ws/chats/?token={token}")
    stream = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await get_channel_layer().group_send(chat_group(chat.id), {"type": "chat.typing", "username": "bob", "frame": "{}"})
    assert (await stream.receive_output(timeout=5))["text"] == "{}"  # a group message came and went
    (consumer,) = sockets_of(ChatStreamConsumer)
    for _ in range(100):  # the reader's task ends just after the frame it sent
        if consumer.reader is None:
            break
        await asyncio.sleep(0.01)
    assert (consumer.inbox, consumer.reader) == (None, None)
    # The sockets' own channels are names for their groups only: Redis has subscriptions for the groups alone.
    subscribed = redis.Redis.from_url(settings.REDIS_URL).pubsub_channels()
    assert not [channel for channel in subscribed if b"specific." in channel]
    for socket in (stream, lobby):
        await socket.disconnect()
    assert sockets_of(ChatStreamConsumer) == sockets_of(LobbyConsumer) == []


@pytest.mark.asyncio
async def test_an_open_socket_keeps_one_coroutine_between_the_protocol_router_and_its_consumer(ann, chat, token):
    """Each suspended coroutine of the chain that runs a socket lives as long as the socket, with the scope it was
    given: the entry does origin, route and user in one (chats.live.entry), and copies no scope."""
    stream = await connect(f"/ws/chats/{chat.id}/?token={token}")
    chain, awaited = [], stream.future.get_coro()
    while inspect.iscoroutine(awaited):
        chain.append(awaited.cr_code.co_qualname)
        awaited = awaited.cr_await
    assert chain[:3] == ["ProtocolTypeRouter.__call__", "WebsocketEntry.__call__", "EventStreamConsumer.__call__"]
    (consumer,) = sockets_of(ChatStreamConsumer)
    assert consumer.scope is stream.scope  # the server's own
    assert consumer.handshake is None  # admitted: its user's id and name are kept, not the User
    assert (consumer.user_id, consumer.username, consumer.chat_key) == (ann.pk, "ann", str(chat.id))
    await stream.disconnect()


@pytest.mark.asyncio
async def test_an_admitted_socket_keeps_no_user_row(chat, token, monkeypatch):
    users = []

    async def recorded(key):
        user = await user_for_token(key)
        users.append(weakref.ref(user))
        return user

    monkeypatch.setattr(entry, "user_for_token", recorded)
    stream = await connect(f"/ws/chats/{chat.id}/?token={token}")
    gc.collect()
    assert len(users) == 1 and users[0]() is None
    await stream.disconnect()


def test_every_socket_shares_its_consumers_attribute_names():
    # CPython 3.11 shares up to 30 attribute names among a class's instances; one more gives every socket a
    # dict of its own, 1.6 KB instead of 0.3 KB.
    for kind in (LobbyConsumer, ChatStreamConsumer):
        assert sys.getsizeof(vars(kind())) < 512, kind


@pytest.mark.asyncio
async def test_a_group_message_is_unpacked_once_for_all_the_sockets_it_reaches():
    layer = get_channel_layer()
    packed = layer.serialize({"type": "chat.event", "frame": "{}"})
    assert layer.deserialize(packed) is layer.deserialize(packed)
    assert layer.deserialize(layer.serialize({"type": "chat.event"})) == {"type": "chat.event"}


@pytest.mark.asyncio
async def test_a_group_message_the_socket_cannot_handle_ends_it_and_gives_back_what_it_held(ann, chat, token):
    """As in Channels, an exception in a group message's dispatch ends the socket (daphne then closes it with
    1011), here from the task that dispatches the socket's inbox: the socket leaves the layer and its groups, and
    its slot in the user's socket count is given back."""
    stream = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await get_channel_layer().group_send(chat_group(chat.id), {"type": "no.such.type"})
    with pytest.raises(ValueError, match="No handler for message type no.such.type"):
        await stream.wait(timeout=5)  # the socket's task ends, with the dispatch's error
    assert sockets_of(ChatStreamConsumer) == []
    assert await ChatStreamConsumer.slots.count(ann.pk) == 0
