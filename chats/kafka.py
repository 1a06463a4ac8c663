"""Kafka clients configured once for the service, so the relay, the forwarder and the tests agree."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

logger = logging.getLogger(__name__)

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
