"""`manage.py relay_outbox`: the only process that talks to Kafka on the way out."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, connection
from kafka.errors import KafkaError

from chats.pipeline.kafka_clients import bootstrap_servers, create_producer
from chats.pipeline.outbox_wakeup import CHANNEL, OutboxWakeup
from chats.pipeline.relay import BrokerUnavailable, relay_forever, retry_parked
from chats.runtime import metrics
from chats.runtime.arguments import parse_duration, positive_float, positive_int
from chats.runtime.heap import freeze_startup_objects
from chats.runtime.worker_loop import Backoff, StopFlag

logger = logging.getLogger("chats.pipeline.relay")


class Command(BaseCommand):
    help = (
        "Send pending outbox events to Kafka in id order, marking each batch published once the broker has "
        "acknowledged it. Runs until SIGTERM/SIGINT; --once drains the outbox and exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Drain the outbox, then exit (non-zero if Kafka is away).")
        parser.add_argument("--batch-size", type=positive_int, default=500, help="Rows per batch (default 500).")
        parser.add_argument(
            "--poll-interval", type=positive_float, default=1.0,
            help="Most seconds between looks at an idle outbox (default 1). The relay wakes at once on a "
                 "Redis message the writers publish after commit; this is the ceiling when a signal is lost "
                 "or Redis is down.",
        )
        parser.add_argument(
            "--prune-after", type=parse_duration, default=parse_duration("7d"),
            help="Delete published rows older than this (like 12h or 7d; default 7d), checked every 10 minutes.",
        )
        parser.add_argument("--retry-failed", action="store_true", help="Put parked rows back in the queue first.")
        metrics.add_arguments(parser)

    def handle(self, *args, once, batch_size, poll_interval, prune_after, retry_failed, **options):
        try:
            servers = bootstrap_servers()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        metrics.initialize((metrics.RELAY_EVENTS, metrics.RELAY_OUTCOMES),
                           (metrics.RELAY_FAILURES, metrics.RELAY_FAILURE_REASONS))
        metrics.expose_outbox_backlog(close_connection=True)
        metrics.serve_from_options(options)
        topic = settings.KAFKA_TOPIC
        if retry_failed:
            logger.info("put %d parked rows back in the queue", retry_parked())
        logger.info(
            "relay_outbox: %s database -> Kafka %s topic %s, batch %d, %s",
            connection.vendor, servers, topic, batch_size,
            f"waking on Redis messages {CHANNEL}, at least every {poll_interval:g}s",
        )
        if not once:
            freeze_startup_objects()  # a loop that runs for days; --once drains and exits
        try:
            relayed = relay_forever(
                create_producer, topic, batch_size, StopFlag(), Backoff(), OutboxWakeup(), poll_interval,
                prune_after, once=once,
            )
        except (BrokerUnavailable, KafkaError) as error:
            raise CommandError(f"Kafka at {servers} is unavailable: {error}") from None
        except (OperationalError, InterfaceError) as error:
            raise CommandError(f"The database is unavailable: {error}") from None
        logger.info("relay_outbox stopped; it relayed %d events", relayed)
