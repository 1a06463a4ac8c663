"""`manage.py forward_events`: Kafka consumer group -> channel layer groups -> websocket consumers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from chats.forwarder import RecentEventIds, handle_record
from chats.kafka import FAIL_FAST, bootstrap_servers
from chats.workers import Backoff, StopFlag, positive_int

logger = logging.getLogger("chats.forwarder")

REPORT_EVERY_SECONDS = 10


class LogAssignments(ConsumerRebalanceListener):
    """Says which partitions this forwarder owns, so operators can see several forwarders share them."""

    def on_partitions_revoked(self, revoked):
        if revoked:
            logger.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned):
        logger.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


def create_consumer(topic: str, group_id: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers(),
        group_id=group_id,
        # Offsets are committed only after the records were sent to the channel layer.
        enable_auto_commit=False,
        # A new group starts at the beginning: "latest" is unreliable on the embedded broker (wrong end
        # offsets), and websocket consumers drop seqs they have sent, so a replay costs work, not duplicates.
        auto_offset_reset="earliest",
        # Group joins take about half the session timeout: 6 s makes a forwarder live in ~3 s, not ~23 s.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=500,
        # The embedded broker answers a waiting fetch only when this runs out, not when data arrives:
        # kafka-python's 500 ms default put ~140 ms (p50) on every event's way to the websockets.
        fetch_max_wait_ms=20,
        **FAIL_FAST,
    )
    consumer.subscribe([topic], listener=LogAssignments())
    return consumer


class Command(BaseCommand):
    help = "Forward events from Kafka to the websocket groups. Several forwarders share the partitions."

    def add_arguments(self, parser):
        parser.add_argument("--group", default=settings.KAFKA_FORWARDER_GROUP, help="Kafka consumer group id.")
        parser.add_argument(
            "--dedup-window", type=positive_int, default=100_000,
            help="How many recent event ids to remember for dropping repeats (default 100000).",
        )

    def handle(self, *args, group, dedup_window, **options):
        try:
            servers = bootstrap_servers()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if not group.strip():
            raise CommandError("--group must not be empty.")
        asyncio.run(self.forward(servers, settings.KAFKA_TOPIC, group, RecentEventIds(dedup_window)))

    async def forward(self, servers: str, topic: str, group: str, recent: RecentEventIds) -> None:
        stop = StopFlag()
        backoff = Backoff()
        layer = get_channel_layer()
        consumer = None
        outcomes: Counter[str] = Counter()
        next_report = time.monotonic() + REPORT_EVERY_SECONDS
        logger.info("forward_events: Kafka %s topic %s group %s -> channel layer %s", servers, topic, group, settings.REDIS_URL)
        try:
            while not stop:
                try:
                    if consumer is None:
                        consumer = await asyncio.to_thread(create_consumer, topic, group)
                        logger.info("connected to Kafka at %s", servers)
                    batches = await asyncio.to_thread(consumer.poll, timeout_ms=500)
                    backoff.reset()
                except KafkaError as error:
                    if consumer is not None:
                        await asyncio.to_thread(consumer.close, autocommit=False)
                        consumer = None
                    delay = backoff.next()
                    logger.warning("Kafka at %s unavailable (%s); retrying in %.1fs", servers, error, delay)
                    await asyncio.to_thread(stop.sleep, delay)
                    continue
                for records in batches.values():
                    for record in records:
                        outcomes[await self.send_with_retry(record, layer, recent, stop, backoff)] += 1
                if stop:
                    break  # records of an unfinished batch stay uncommitted and are read again
                if batches:
                    await asyncio.to_thread(consumer.commit)
                if outcomes and time.monotonic() >= next_report:
                    logger.info("forwarded %(forwarded)d, dropped %(duplicate)d repeats, skipped %(invalid)d invalid", outcomes)
                    outcomes.clear()
                    next_report = time.monotonic() + REPORT_EVERY_SECONDS
        finally:
            if consumer is not None:
                await asyncio.to_thread(consumer.close, autocommit=False)
            logger.info("forward_events stopped")

    async def send_with_retry(self, record, layer, recent, stop, backoff) -> str:
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
