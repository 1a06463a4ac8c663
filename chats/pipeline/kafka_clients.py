"""Kafka clients configured once for the service, so the relay, the forwarder and the tests agree."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
)
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

logger = logging.getLogger("chats.pipeline.kafka_clients")

# Fail fast when the broker is away, so a worker logs it and backs off instead of hanging for 30-60 s.
FAIL_FAST = {"bootstrap_timeout_ms": 5000, "request_timeout_ms": 10000}


def bootstrap_servers() -> str:
    if not settings.KAFKA_BOOTSTRAP_SERVERS:
        raise ImproperlyConfigured(
            "KAFKA_BOOTSTRAP_SERVERS is not set. `make run` starts an embedded broker and sets it; "
            "otherwise point it at your Kafka, e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092."
        )
    return settings.KAFKA_BOOTSTRAP_SERVERS


def create_producer(**overrides: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(),
        # acks=all with idempotence (kafka-python's default): a broker retry can neither lose nor
        # duplicate nor reorder a record within a partition.
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "max_block_ms": 10000,
        "delivery_timeout_ms": 30000,
        **FAIL_FAST,
        **overrides,
    }
    return KafkaProducer(**config)


class LogAssignments(ConsumerRebalanceListener):
    """Says which partitions this forwarder owns, so operators can see several forwarders share them."""

    def on_partitions_revoked(self, revoked):
        if revoked:
            logger.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned):
        logger.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


def create_consumer(topic: str, group_id: str, **overrides: Any) -> KafkaConsumer:
    """The forwarder's consumer: joins `group_id` on `topic`; offsets are committed by the caller."""
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
        # How long an idle fetch may wait: a ceiling on Apache Kafka, the whole wait on the embedded broker.
        fetch_max_wait_ms=settings.KAFKA_FETCH_MAX_WAIT_MS,
        **FAIL_FAST,
        **overrides,
    )
    consumer.subscribe([topic], listener=LogAssignments())
    return consumer


def ensure_topic(topic: str | None = None) -> None:
    """Create the topic with the configured partitions if it is missing (an existing one is left as is)."""
    topic = topic or settings.KAFKA_TOPIC
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(), **FAIL_FAST)
    try:
        admin.create_topics(
            [NewTopic(topic, settings.KAFKA_TOPIC_PARTITIONS, settings.KAFKA_TOPIC_REPLICATION_FACTOR)]
        )
        logger.info("created topic %s with %d partitions", topic, settings.KAFKA_TOPIC_PARTITIONS)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
