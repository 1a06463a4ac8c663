"""Outbox -> Kafka, in small steps that `manage.py relay_outbox` loops over and tests call directly.

A batch is claimed in id order, produced with acks=all, and marked published only after the broker has
acknowledged it, so delivery is at least once: a crash between the acknowledgement and the mark resends
that one batch, never loses it.

Order. Rows of one chat are inserted under that chat's row lock, so their ids follow commit order and a
batch sends them in seq order to one partition (key = chat id). On PostgreSQL several relays may run: each
claims rows with FOR UPDATE SKIP LOCKED and holds the locks until it has marked them, and a relay sends a
chat's rows only if no earlier pending row of that chat is held by another relay (`_order_safe`).
On SQLite there is no row locking: run one relay.

`relay_forever` is the loop of the command, with its clients, stop flag and backoff passed in: a broker or
database error closes the producer (or the connection), nothing is marked, and the batch is tried again
after a backoff.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Min
from django.utils import timezone
from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from chats.models import OutboxEvent
from chats.pipeline.kafka_clients import ensure_topic
from chats.runtime import metrics
from chats.runtime.logs import event_fields
from chats.runtime.worker_loop import Backoff, StopFlag

logger = logging.getLogger("chats.pipeline.relay")

# Kafka refuses these for what the record is, so sending it again cannot help: the row is parked.
# Any other error (broker away, timeouts, authorization) is about the cluster, so the batch is retried.
RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError, CorruptRecordError)


class BrokerUnavailable(Exception):
    """The batch could not be acknowledged; nothing was marked and it will be sent again."""


@dataclass
class BatchOutcome:
    published: list[int] = field(default_factory=list)
    parked: dict[int, str] = field(default_factory=dict)  # row id -> error


def holds_row_locks() -> bool:
    return connection.features.has_select_for_update_skip_locked


def claim_batch(batch_size: int) -> list[OutboxEvent]:
    """The oldest pending rows; on PostgreSQL locked for this relay until its transaction ends."""
    pending = OutboxEvent.objects.filter(OutboxEvent.PENDING).order_by("id")
    if holds_row_locks():
        pending = pending.select_for_update(skip_locked=True)
    rows = list(pending.only("id", "chat_id", "event_type", "envelope")[:batch_size])
    return _order_safe(rows)


def _order_safe(rows: list[OutboxEvent]) -> list[OutboxEvent]:
    """Drop rows of a chat that has an earlier pending row outside this batch (another relay holds it)."""
    if not rows:
        return rows
    claimed = [row.id for row in rows]
    held_elsewhere = dict(
        OutboxEvent.objects.filter(OutboxEvent.PENDING, chat_id__in={row.chat_id for row in rows}, id__lt=claimed[-1])
        .exclude(id__in=claimed)
        .values("chat_id")
        .annotate(first=Min("id"))
        .values_list("chat_id", "first")
    )
    return [row for row in rows if row.id < held_elsewhere.get(row.chat_id, row.id + 1)]


def publish_batch(producer: KafkaProducer, topic: str, rows: Iterable[OutboxEvent]) -> BatchOutcome:
    """Send the rows and wait for the broker; raise BrokerUnavailable unless every send is settled."""
    outcome = BatchOutcome()
    in_flight = []
    try:
        for row in rows:
            try:
                future = producer.send(
                    topic,
                    key=str(row.chat_id).encode(),
                    value=json.dumps(row.envelope, separators=(",", ":")).encode(),
                    headers=[("event_type", row.event_type.encode())],
                )
            except RECORD_ERRORS as error:
                outcome.parked[row.id] = f"{type(error).__name__}: {error}"
                continue
            in_flight.append((row.id, future))
        producer.flush()
        for row_id, future in in_flight:
            try:
                future.get(timeout=0)
            except RECORD_ERRORS as error:
                outcome.parked[row_id] = f"{type(error).__name__}: {error}"
            else:
                outcome.published.append(row_id)
    except KafkaError as error:
        raise BrokerUnavailable(f"{type(error).__name__}: {error}") from error
    return outcome


def record_outcome(outcome: BatchOutcome) -> None:
    now = timezone.now()
    with transaction.atomic():
        OutboxEvent.objects.filter(id__in=outcome.published).update(published_at=now)
        for row_id, error in outcome.parked.items():
            logger.error("parked outbox row %d, Kafka refused it: %s", row_id, error)
            OutboxEvent.objects.filter(id=row_id).update(failed_at=now, last_error=error[:2000])


def relay_batch(producer: KafkaProducer, topic: str, batch_size: int) -> int:
    """Claim, send and mark one batch; return how many rows it settled (0 when the outbox is empty)."""
    # On PostgreSQL the claim's row locks must last until the mark; on SQLite a transaction here would
    # hold the database's write lock, and every API write with it, for as long as Kafka takes.
    started = time.perf_counter()
    with transaction.atomic() if holds_row_locks() else nullcontext():
        rows = claim_batch(batch_size)
        if not rows:
            return 0
        outcome = publish_batch(producer, topic, rows)
        record_outcome(outcome)
    seconds = time.perf_counter() - started
    metrics.RELAY_BATCH_SECONDS.observe(seconds)
    metrics.RELAY_EVENTS.labels("published").inc(len(outcome.published))
    metrics.RELAY_EVENTS.labels("parked").inc(len(outcome.parked))
    log_batch(rows, outcome, seconds)
    return len(outcome.published) + len(outcome.parked)


def log_batch(rows: list[OutboxEvent], outcome: BatchOutcome, seconds: float) -> None:
    """One INFO line per batch; with DEBUG, one line per event with its ids (the logs follow a message)."""
    logger.info(
        "relayed a batch: %d published, %d parked in %.1fms", len(outcome.published), len(outcome.parked),
        seconds * 1000, extra={"published": len(outcome.published), "parked": len(outcome.parked)},
    )
    if logger.isEnabledFor(logging.DEBUG):
        published = set(outcome.published)
        for row in rows:
            state = "published" if row.id in published else "parked"
            logger.debug("%s %s %s", state, row.event_type, row.envelope.get("event_id"),
                         extra={"outbox_id": row.id, **event_fields(row.envelope)})


def prune_published(older_than: timedelta) -> int:
    deleted, _ = OutboxEvent.objects.filter(published_at__lt=timezone.now() - older_than).delete()
    return deleted


def retry_parked() -> int:
    return OutboxEvent.objects.filter(failed_at__isnull=False, published_at__isnull=True).update(
        failed_at=None, last_error=""
    )


PRUNE_EVERY_SECONDS = 600


def relay_forever(
    connect: Callable[[], KafkaProducer], topic: str, batch_size: int, stop: StopFlag, backoff: Backoff,
    wakeup, poll_interval: float, prune_after: timedelta, once: bool = False,
) -> int:
    """Relay batches until `stop` (or, with `once`, until the outbox is empty); return how many rows it
    settled. With `once`, a broker or database error is raised instead of retried."""
    producer = None
    relayed = 0
    next_prune = time.monotonic()
    try:
        while not stop:
            try:
                if producer is None:
                    producer = connect()
                    ensure_topic(topic)
                    logger.info("connected to Kafka")
                settled = relay_batch(producer, topic, batch_size)
                backoff.reset()
            except (BrokerUnavailable, KafkaError) as error:
                metrics.RELAY_FAILURES.labels("broker").inc()
                if producer is not None:
                    producer.close(timeout=0)
                    producer = None
                if once:
                    raise
                delay = backoff.next()
                logger.warning("Kafka unavailable (%s); nothing was marked; retrying in %.1fs", error, delay)
                stop.sleep(delay)
                continue
            except (OperationalError, InterfaceError) as error:
                metrics.RELAY_FAILURES.labels("database").inc()
                connection.close()
                if once:
                    raise
                delay = backoff.next()
                logger.warning("database unavailable (%s); retrying in %.1fs", error, delay)
                stop.sleep(delay)
                continue
            relayed += settled
            if settled:
                continue
            if once:
                break
            if time.monotonic() >= next_prune:
                pruned = prune_published(prune_after)
                if pruned:
                    logger.info("pruned %d published rows older than %s", pruned, prune_after)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            wakeup.wait(poll_interval, stop)
    finally:
        if producer is not None:
            producer.close()
    return relayed
