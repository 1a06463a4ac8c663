"""Kafka -> channel layer: the loop `manage.py forward_events` runs, and the steps it takes.

Each record is checked to be an envelope (docs/protocol.md), dropped if its event_id was forwarded recently
(delivery is at least once), and sent to its chat's group and, for chat events, to the lobby group.

Commit rule: an offset is committed only once every record before it in its partition was sent to the
channel layer (or skipped as invalid or repeated). A Kafka error anywhere, the commit included (evicted
from the group after a long Redis outage, a rebalance, a broker restart), closes the consumer without
committing and joins again after a backoff: the records after the last commit are read again and their
repeats are dropped here and by the websocket consumers, so nothing is lost and nothing shows twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from redis.exceptions import RedisError

from chats.pipeline.wire import (
    LOBBY_GROUP,
    MESSAGE_TYPES,
    InvalidEnvelope,
    chat_group,
    group_message,
    is_addressed,
    parse_envelope,
    user_group,
)
from chats.runtime import metrics
from chats.runtime.logs import event_fields
from chats.runtime.worker_loop import Backoff, StopFlag

logger = logging.getLogger("chats.pipeline.forwarder")

class RecentEventIds:
    """The last `capacity` event ids, oldest forgotten first: dedup with bounded memory."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def groups_for(envelope: dict[str, Any]) -> list[str]:
    """A chat's own events go to its stream; lobbies get a public chat's creation and deletion (all of them),
    and the rest only where the envelope's `user_ids` say: the routing needs no database read.
    A membership event goes to the chat's stream and to that member's sockets; a read position to the
    reader's sockets only."""
    event_type = envelope["event_type"]
    groups = [] if event_type == "chat.read" else [chat_group(envelope["chat_id"])]
    if event_type in MESSAGE_TYPES:
        return groups
    if is_addressed(envelope):
        groups.extend(user_group(user_id) for user_id in envelope["user_ids"])
    else:
        groups.append(LOBBY_GROUP)
    return groups


COMMIT_TO_PRODUCE, PRODUCE_TO_FORWARD = (metrics.FORWARDER_EVENT_AGE_SECONDS.labels(stage)
                                        for stage in metrics.EVENT_AGE_STAGES)


def observe_age(occurred_at: float | None, produced_ms: int | None) -> None:
    """The event's age in its two stages so far (metrics.FORWARDER_EVENT_AGE_SECONDS)."""
    if produced_ms is None or produced_ms < 0:  # a record without a timestamp (older message format)
        return
    produced = produced_ms / 1000
    if occurred_at is not None:
        COMMIT_TO_PRODUCE.observe(max(0.0, produced - occurred_at))
    PRODUCE_TO_FORWARD.observe(max(0.0, time.time() - produced))


async def handle_record(record: Any, channel_layer: Any, recent: RecentEventIds) -> str:
    """Forward one Kafka record; return 'forwarded', 'duplicate' or 'invalid'.

    A channel-layer error propagates: the caller retries the record and commits nothing past it.
    """
    try:
        envelope = parse_envelope(record.value)
    except InvalidEnvelope as error:
        logger.warning(
            "skipping record %s[%d]@%d: %s", record.topic, record.partition, record.offset, error
        )
        return "invalid"
    if envelope["event_id"] in recent:
        outcome = "duplicate"
    else:
        message = group_message(envelope)
        for group in groups_for(envelope):
            await channel_layer.group_send(group, message)
        recent.add(envelope["event_id"])
        outcome = "forwarded"
        observe_age(message["occurred_at"], record.timestamp)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s %s %s from %s[%d]@%d", outcome, envelope["event_type"], envelope["event_id"], record.topic,
            record.partition, record.offset,
            extra={"partition": record.partition, "offset": record.offset, **event_fields(envelope)},
        )
    return outcome


def poll(consumer: KafkaConsumer) -> dict[TopicPartition, list]:
    """One poll, then the lag of each assigned partition from what the fetches reported (no extra request).
    The embedded Tansu broker reports wrong end offsets, so the lag there means nothing (see the metric)."""
    batches = consumer.poll(timeout_ms=500)
    owned = set()
    for partition in consumer.assignment():
        end = consumer.highwater(partition)  # as the last fetch response reported it
        try:
            # timeout 0: after a poll the position is known, and a metric never waits on the network
            position = consumer.position(partition, timeout_ms=0) if end is not None else None
        except KafkaError:
            position = None
        if position is not None:
            label = str(partition.partition)
            metrics.FORWARDER_LAG.labels(label).set(max(0, end - position))
            owned.add(label)
    for label in _lag_labels - owned:  # partitions another forwarder owns now
        metrics.FORWARDER_LAG.remove(label)
    _lag_labels.clear()
    _lag_labels.update(owned)
    return batches


_lag_labels: set[str] = set()


COMMIT_TIMEOUT_MS = 10_000  # kafka-python's commit() otherwise waits forever for an unreachable coordinator


async def forward_forever(
    connect: Callable[[], KafkaConsumer], layer: Any, recent: RecentEventIds, stop: StopFlag, backoff: Backoff,
) -> None:
    """Poll, send, commit until `stop`; survive every Kafka and channel-layer error (see the module doc)."""
    consumer: KafkaConsumer | None = None
    outcomes: Counter[str] = Counter()
    try:
        while not stop:
            try:
                if consumer is None:
                    consumer = await asyncio.to_thread(connect)
                    logger.info("connected to Kafka")
                batches = await asyncio.to_thread(poll, consumer)
                backoff.reset()
                sent = await forward_batches(batches, layer, recent, stop, backoff, outcomes)
                if sent:
                    await asyncio.to_thread(consumer.commit, sent, COMMIT_TIMEOUT_MS)
                if outcomes:
                    logger.info(
                        "forwarded %(forwarded)d, dropped %(duplicate)d repeats, skipped %(invalid)d invalid",
                        outcomes, extra=dict(outcomes),
                    )
                    outcomes.clear()
            except KafkaError as error:
                if consumer is not None:
                    await asyncio.to_thread(consumer.close, autocommit=False)
                    consumer = None
                delay = backoff.next()
                logger.warning(
                    "Kafka error (%s: %s); records after the last commit will be read again; rejoining in %.1fs",
                    type(error).__name__, error, delay,
                )
                await asyncio.to_thread(stop.sleep, delay)
    finally:
        if consumer is not None:
            await asyncio.to_thread(consumer.close, autocommit=False)


async def forward_batches(
    batches: dict[TopicPartition, list], layer: Any, recent: RecentEventIds, stop: StopFlag, backoff: Backoff,
    outcomes: Counter[str],
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Send a poll's records in partition order; return the offsets to commit: after the last record of each
    partition that was settled. A stop during a channel-layer outage ends it early with what was settled."""
    settled: dict[TopicPartition, OffsetAndMetadata] = {}
    for partition, records in batches.items():
        for record in records:
            outcome = await send_with_retry(record, layer, recent, stop, backoff)
            if outcome == "unsent":
                return settled
            outcomes[outcome] += 1
            metrics.FORWARDER_RECORDS.labels(outcome).inc()
            settled[partition] = OffsetAndMetadata(record.offset + 1, "", -1)
    return settled


async def send_with_retry(record: Any, layer: Any, recent: RecentEventIds, stop: StopFlag, backoff: Backoff) -> str:
    """handle_record, retried with backoff while the channel layer is away; 'unsent' if stopped meanwhile."""
    while True:
        try:
            return await handle_record(record, layer, recent)
        except (RedisError, OSError) as error:
            if stop:
                return "unsent"
            delay = backoff.next()
            logger.warning(
                "channel layer unavailable (%s) at %s[%d]@%d; retrying in %.1fs",
                error, record.topic, record.partition, record.offset, delay,
            )
            await asyncio.to_thread(stop.sleep, delay)
