"""Scenario 2, relay: drain 20,000 outbox events to Kafka, against raw kafka-python producing the same records.

Both sides send exactly what the relay sends for a row (key = chat id, value = the compact JSON envelope,
header event_type) with the relay's own producer settings (`chats.pipeline.kafka_clients.create_producer`), to topics of
their own on the same broker. The raw side sends all records and then flushes once: the fastest correct
use of the client. The relay side is the relay's loop (`chats.pipeline.relay.relay_batch` until the outbox is empty,
500 rows a batch, as `manage.py relay_outbox` runs it), so the difference is what claiming rows, waiting for
each batch's acknowledgement and marking the rows cost. Timing starts once each producer is connected.

It runs before the service's own relay process starts, which would otherwise take the rows.
"""

from __future__ import annotations

import json
import time
import uuid

from django.conf import settings
from django.utils import timezone

from chats.models import OutboxEvent
from chats.pipeline.kafka_clients import create_producer, ensure_topic
from chats.pipeline.relay import relay_batch

EVENTS = 20_000
CHATS = 32  # keys, spread over the topic's partitions
BATCH_SIZE = 500  # relay_outbox's default


def envelope(chat_id: str, seq: int) -> dict:
    """A message.created envelope as the service writes it (~330 bytes as JSON)."""
    now = timezone.now().isoformat().replace("+00:00", "Z")
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "message.created",
        "occurred_at": now,
        "chat_id": chat_id,
        "payload": {"id": str(uuid.uuid4()), "chat_id": chat_id, "seq": seq, "text": f"bench message number {seq}",
                    "author": "bench-writer", "created_at": now},
    }


def make_envelopes() -> list[dict]:
    chat_ids = [str(uuid.uuid4()) for _ in range(CHATS)]
    return [envelope(chat_ids[i % CHATS], i // CHATS + 1) for i in range(EVENTS)]


def fill_outbox(envelopes: list[dict]) -> None:
    OutboxEvent.objects.bulk_create(
        [OutboxEvent(event_id=e["event_id"], event_type=e["event_type"], chat_id=e["chat_id"], envelope=e)
         for e in envelopes],
        batch_size=1000,
    )


def produce_raw(topic: str, envelopes: list[dict]) -> float:
    """Seconds to produce every record and see every acknowledgement."""
    producer = create_producer()
    try:
        started = time.perf_counter()
        futures = [
            producer.send(topic, key=e["chat_id"].encode(), value=json.dumps(e, separators=(",", ":")).encode(),
                          headers=[("event_type", e["event_type"].encode())])
            for e in envelopes
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises if the broker refused a record
        return time.perf_counter() - started
    finally:
        producer.close()


def drain_outbox(topic: str) -> tuple[int, float]:
    """Events relayed and seconds taken by the relay's loop until the outbox is empty."""
    producer = create_producer()
    try:
        relayed = 0
        started = time.perf_counter()
        while settled := relay_batch(producer, topic, BATCH_SIZE):
            relayed += settled
        return relayed, time.perf_counter() - started
    finally:
        producer.close()


def run() -> dict:
    envelopes = make_envelopes()
    fill_outbox(envelopes)
    raw_topic, relay_topic = f"{settings.KAFKA_TOPIC}-raw", f"{settings.KAFKA_TOPIC}-relay"
    ensure_topic(raw_topic)
    ensure_topic(relay_topic)
    raw_seconds = produce_raw(raw_topic, envelopes)
    relayed, relay_seconds = drain_outbox(relay_topic)
    if relayed != EVENTS or OutboxEvent.objects.filter(OutboxEvent.PENDING).exists():
        raise RuntimeError(f"the relay settled {relayed} of {EVENTS} events")
    return {
        "events": EVENTS,
        "batch_size": BATCH_SIZE,
        "envelope_bytes": round(sum(len(json.dumps(e, separators=(",", ":"))) for e in envelopes) / EVENTS),
        "relay": {"seconds": round(relay_seconds, 3), "events_per_s": round(EVENTS / relay_seconds)},
        "raw": {"seconds": round(raw_seconds, 3), "events_per_s": round(EVENTS / raw_seconds)},
        "ratio": round(raw_seconds / relay_seconds, 3),
    }
