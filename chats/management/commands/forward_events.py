"""`manage.py forward_events`: Kafka consumer group -> channel layer groups -> websocket consumers."""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from chats.pipeline.forwarder import RecentEventIds, forward_forever
from chats.pipeline.kafka_clients import bootstrap_servers, create_consumer
from chats.runtime import metrics
from chats.runtime.arguments import positive_int
from chats.runtime.heap import freeze_startup_objects
from chats.runtime.worker_loop import Backoff, StopFlag

logger = logging.getLogger("chats.pipeline.forwarder")


class Command(BaseCommand):
    help = "Forward events from Kafka to the websocket groups. Several forwarders share the partitions."

    def add_arguments(self, parser):
        parser.add_argument("--group", default=settings.KAFKA_FORWARDER_GROUP, help="Kafka consumer group id.")
        parser.add_argument(
            "--dedup-window", type=positive_int, default=100_000,
            help="How many recent event ids to remember for dropping repeats (default 100000).",
        )
        metrics.add_arguments(parser)

    def handle(self, *args, group, dedup_window, **options):
        try:
            servers = bootstrap_servers()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if not group.strip():
            raise CommandError("--group must not be empty.")
        metrics.initialize((metrics.FORWARDER_RECORDS, metrics.FORWARDER_OUTCOMES))
        metrics.serve_from_options(options)
        topic = settings.KAFKA_TOPIC
        logger.info("forward_events: Kafka %s topic %s group %s -> channel layer %s", servers, topic, group, settings.REDIS_URL)
        freeze_startup_objects()
        asyncio.run(
            forward_forever(
                lambda: create_consumer(topic, group), get_channel_layer(), RecentEventIds(dedup_window),
                StopFlag(), Backoff(),
            )
        )
        logger.info("forward_events stopped")
