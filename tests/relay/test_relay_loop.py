"""The relay's loop (chats.pipeline.relay.relay_forever) called directly, with real clients: its retry rule."""

import threading
from datetime import timedelta

import pytest
from kafka.errors import KafkaError

from chats.pipeline.kafka_clients import create_producer
from chats.pipeline.relay import BrokerUnavailable, relay_forever
from chats.runtime.embedded import free_port
from chats.runtime.worker_loop import Backoff, StopFlag
from tests.helpers import envelopes_of, read_topic, wait_until
from tests.relay.test_relay import pending_count, write_burst

pytestmark = pytest.mark.django_db(transaction=True)


class NoWakeup:
    """The relay's wake-up without Redis: wait out the poll interval (or the stop)."""

    def wait(self, seconds: float, stop: StopFlag) -> None:
        stop.sleep(seconds)


def test_with_once_an_unreachable_broker_is_raised_and_nothing_is_marked(kafka, ann):
    written = write_burst(ann, chats=2, messages=3)
    unreachable = f"127.0.0.1:{free_port()}"
    with pytest.raises((BrokerUnavailable, KafkaError)):
        relay_forever(lambda: create_producer(bootstrap_servers=unreachable), kafka, 100, StopFlag(signals=()),
                      Backoff(), NoWakeup(), 0.1, timedelta(days=7), once=True)
    assert pending_count() == written


def test_a_broker_that_is_away_at_first_is_retried_until_every_row_is_sent_once(kafka, kafka_broker, ann):
    written = write_burst(ann, chats=2, messages=3)
    attempts = []

    def connect():
        attempts.append(1)
        if len(attempts) < 3:  # the first two connections find no broker
            return create_producer(bootstrap_servers=f"127.0.0.1:{free_port()}")
        return create_producer()

    stop = StopFlag(signals=())
    relay = threading.Thread(target=relay_forever, args=(connect, kafka, 100, stop, Backoff(maximum=0.5),
                                                          NoWakeup(), 0.1, timedelta(days=7)))
    relay.start()
    try:
        wait_until(lambda: pending_count() == 0, 60, message="the outbox to drain once the broker is there")
    finally:
        stop.set()
        relay.join(30)
    assert len(attempts) == 3
    envelopes = envelopes_of(read_topic(kafka_broker.address, kafka, at_least=written))
    assert len(envelopes) == len({e["event_id"] for e in envelopes}) == written
