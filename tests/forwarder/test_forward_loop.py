"""The forwarder's loop (chats.pipeline.forwarder.forward_forever) on the real broker and a real Redis it can lose.

The loop takes its consumer factory, channel layer, stop flag and backoff as arguments, so its rules are
tried here on real clients without starting the command: a failed commit is survived, and a stop commits
exactly what was sent.
"""

import asyncio
import logging
import re
import uuid

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings as django_settings

from chats.pipeline.forwarder import RecentEventIds, forward_forever
from chats.pipeline.kafka_clients import create_consumer
from chats.pipeline.wire import chat_group
from chats.runtime.embedded import free_port, start_redis
from chats.runtime.worker_loop import Backoff, StopFlag
from tests.forwarder.test_forwarder import (
    as_record,
    committed,
    envelope,
    event_id_of,
    listen,
    produce,
    receive,
)
from tests.helpers import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_port():
    port = free_port()
    server = start_redis(port=port)
    yield port, server
    server.stop()


def repeats_dropped(log: str) -> int:
    return sum(int(n) for n in re.findall(r"dropped (\d+) repeats", log))


def start_loop(group: str, layer, **consumer_settings):
    stop = StopFlag(signals=())
    task = asyncio.ensure_future(forward_forever(
        lambda: create_consumer(django_settings.KAFKA_TOPIC, group, **consumer_settings),
        layer, RecentEventIds(), stop, Backoff(maximum=1.0),
    ))
    return stop, task


async def test_a_commit_refused_after_eviction_is_survived_and_nothing_is_lost_or_repeated(kafka, redis_port, caplog):
    port, redis = redis_port
    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    chat_id = str(uuid.uuid4())
    channel = await listen(layer, chat_group(chat_id))
    events = [envelope(chat_id, seq) for seq in range(1, 6)]
    caplog.set_level(logging.INFO, logger="chats")
    # Evicted when a poll is 3 s late: a Redis outage longer than that leaves the group behind the loop's back.
    stop, task = start_loop("forwarder-evicted", layer, max_poll_interval_ms=3000)
    try:
        produce([as_record(events[0])])
        assert [event_id_of(m) for m in await receive(layer, channel, 1)] == [events[0]["event_id"]]

        redis.stop()
        produce([as_record(e) for e in events[1:4]])
        await asyncio.to_thread(wait_until, lambda: "channel layer unavailable" in caplog.text, 30,
                                message="the loop to find Redis gone")
        await asyncio.sleep(5)  # past max_poll_interval_ms: the consumer leaves its group
        redis = start_redis(port=port)
        await asyncio.to_thread(wait_until, lambda: "CommitFailedError" in caplog.text, 30,
                                message="the commit to be refused")

        produce([as_record(events[4])])
        got = []
        while not got or got[-1] != events[4]["event_id"]:  # rejoined: delivery goes on
            got += [event_id_of(m) for m in await receive(layer, channel, 1, timeout=60)]
        # Sends in the instant Redis came back may reach no listener (pub/sub: the web processes' position
        # checks fill those); what did arrive came once and in order, and the re-read was dropped as repeats.
        sent = [e["event_id"] for e in events[1:]]
        assert got == [event_id for event_id in sent if event_id in got]
        await asyncio.to_thread(wait_until, lambda: repeats_dropped(caplog.text) == 3, 30,
                                message="the records read again to be dropped as repeats")
        assert not task.done()
        await asyncio.to_thread(wait_until, lambda: committed("forwarder-evicted") == 5, 30,
                                message="every record to be committed once rejoined")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        redis.stop()


async def test_a_stop_commits_every_record_sent_and_none_that_was_not(kafka, redis_port):
    port, redis = redis_port
    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    chat_id = str(uuid.uuid4())
    channel = await listen(layer, chat_group(chat_id))
    stop, task = start_loop("forwarder-stopped", layer)
    produce([as_record(envelope(chat_id, seq)) for seq in (1, 2, 3)])
    await receive(layer, channel, 3, timeout=60)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert committed("forwarder-stopped") == 3

    redis.stop()
    stop, task = start_loop("forwarder-stopped", layer)
    produce([as_record(envelope(chat_id, seq)) for seq in (4, 5)])
    await asyncio.sleep(8)  # joined, polled, and retrying the send while Redis is away
    stop.set()
    await asyncio.wait_for(task, 30)
    assert committed("forwarder-stopped") == 3
