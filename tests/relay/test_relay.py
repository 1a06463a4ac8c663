"""relay_outbox against the real broker (Tansu) and the real database."""

import json
import re
import signal
import threading
from collections import Counter, defaultdict

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection

from chats import models
from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.pipeline.outbox_wakeup import CHANNEL, OutboxWakeup
from chats.pipeline.relay import prune_published
from chats.runtime.embedded import free_port, start_kafka
from chats.runtime.worker_loop import StopFlag
from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    CreateMessageCommand,
    DeleteMessageCommand,
    EditMessageCommand,
    RemoveMemberCommand,
)
from messaging_domain.exceptions import MessageDeleted
from tests.helpers import envelopes_of, read_topic, wait_until

ON_POSTGRESQL = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def write_burst(owner, chats: int, messages: int, prefix: str = "chat") -> int:
    """Chats with messages each, through the mediator; returns the number of events written."""
    author = participant_of(owner)
    for n in range(chats):
        chat = mediator.handle_command(CreateChatCommand(title=f"{prefix} {n}", owner=author))
        for m in range(messages):
            mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=f"{n}/{m}", author=author))
    return chats * (messages + 1)


def write_concurrently(owners, chats: int, messages: int) -> int:
    """One writer thread per owner, each writing its own burst; returns the number of events written."""
    errors = []

    def write(owner, n):
        try:
            write_burst(owner, chats=chats, messages=messages, prefix=f"w{n}")
        except Exception as error:  # collected and asserted on below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(owner, n)) for n, owner in enumerate(owners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return len(owners) * chats * (messages + 1)


def pending_count() -> int:
    return models.OutboxEvent.objects.filter(models.OutboxEvent.PENDING).count()


def assert_per_chat_order(envelopes: list[dict]) -> None:
    """Per chat: chat.created first, then message seqs strictly increasing with no gaps."""
    seqs = defaultdict(list)
    first = {}
    for envelope in envelopes:
        first.setdefault(envelope["chat_id"], envelope["event_type"])
        if envelope["event_type"] == "message.created":
            seqs[envelope["chat_id"]].append(envelope["payload"]["seq"])
    assert set(first.values()) == {"chat.created"}
    for chat_id, chat_seqs in seqs.items():
        assert chat_seqs == list(range(1, len(chat_seqs) + 1)), chat_id


@pytest.mark.django_db
def test_every_event_of_a_burst_reaches_the_topic_exactly_as_its_envelope(kafka, ann):
    total = write_burst(ann, chats=5, messages=20)

    call_command("relay_outbox", "--once")

    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=total)
    assert len(records) == total
    rows = {str(row.event_id): row for row in models.OutboxEvent.objects.all()}
    for record in records:
        envelope = json.loads(record.value)
        row = rows[envelope["event_id"]]
        assert envelope == row.envelope
        assert record.key == str(row.chat_id).encode()
        assert dict(record.headers) == {"event_type": row.event_type.encode()}
    envelopes = envelopes_of(sorted(records, key=lambda r: (r.partition, r.offset)))
    assert Counter(e["event_id"] for e in envelopes).most_common(1)[0][1] == 1
    assert_per_chat_order(envelopes)
    assert pending_count() == 0
    assert not models.OutboxEvent.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_on_several_chats_keep_per_chat_order_on_the_topic(kafka, make_user, worker):
    relay = worker("relay_outbox", "--batch-size", "20", "--poll-interval", "0.05")
    total = write_concurrently([make_user(f"writer{n}") for n in range(4)], chats=2, messages=40)

    wait_until(lambda: pending_count() == 0, message="the relay to drain the outbox")
    assert relay.stop() == 0
    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=total)
    envelopes = envelopes_of(sorted(records, key=lambda r: (r.partition, r.offset)))
    assert len({e["event_id"] for e in envelopes}) == total
    assert_per_chat_order(envelopes)
    assert "relay_outbox stopped" in relay.output()


def change_one_chat(writer, chat_id, n: int, rounds: int) -> int:
    """One writer's share of changes to a shared chat: it joins, then posts, edits and deletes its own
    messages and, now and then, another writer's latest (refused: only the author edits) and leaves and joins
    again; returns the number of changes it made (each raises the chat's version by one)."""
    author = participant_of(writer)
    changes = 0
    mediator.handle_command(AddMemberCommand(chat_id=chat_id, username=writer.username, requested_by=author))
    changes += 1
    for r in range(rounds):
        posted = mediator.handle_command(CreateMessageCommand(chat_id=chat_id, text=f"w{n} r{r}", author=author))
        seq = posted.message.seq
        mediator.handle_command(EditMessageCommand(chat_id=chat_id, seq=seq, text=f"w{n} r{r} ж😀", editor=author))
        changes += 2
        if r % 3 == 0:
            mediator.handle_command(DeleteMessageCommand(chat_id=chat_id, seq=seq, requested_by=author))
            changes += 1
            try:
                mediator.handle_command(EditMessageCommand(chat_id=chat_id, seq=seq, text="late", editor=author))
            except MessageDeleted:
                pass  # no change, no event
            else:
                raise AssertionError("a deleted message was edited")
        if r % 7 == 6:
            mediator.handle_command(RemoveMemberCommand(chat_id=chat_id, username=writer.username, requested_by=author))
            mediator.handle_command(AddMemberCommand(chat_id=chat_id, username=writer.username, requested_by=author))
            changes += 2
    return changes


@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_deletions_and_memberships_of_one_chat_reach_the_topic_with_consecutive_versions(
    kafka, make_user, worker,
):
    owner = make_user("owner")
    chat = mediator.handle_command(CreateChatCommand(title="Busy", owner=participant_of(owner)))
    relay = worker("relay_outbox", "--batch-size", "20", "--poll-interval", "0.05")
    writers = [make_user(f"writer{n}") for n in range(4)]
    made, errors = [], []

    def write(writer, n):
        try:
            made.append(change_one_chat(writer, chat.id, n, rounds=15))
        except Exception as error:  # collected and asserted on below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(writer, n)) for n, writer in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = 1 + sum(made)  # chat.created, then one event per change
    # ... and read positions (a post passing others' unread messages moves the author's): no version
    reads = models.OutboxEvent.objects.filter(event_type="chat.read").count()

    wait_until(lambda: pending_count() == 0, message="the relay to drain the outbox")
    assert relay.stop() == 0
    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=total + reads)
    assert len(records) == total + reads
    assert {record.partition for record in records} == {records[0].partition}  # one key: one partition
    everything = envelopes_of(sorted(records, key=lambda r: r.offset))
    assert all("version" not in e for e in everything if e["event_type"] == "chat.read")
    envelopes = [e for e in everything if e["event_type"] != "chat.read"]
    assert len(envelopes) == total
    # The chat's version: chat.created at 0, then every change one more, in the topic's order.
    assert [(e["event_type"], e["version"]) for e in envelopes[:1]] == [("chat.created", 0)]
    assert [e["version"] for e in envelopes[1:]] == list(range(1, total))
    for e in envelopes[1:]:
        if e["event_type"].startswith("message."):
            assert e["payload"]["version"] == e["version"], e
            assert e["payload"]["deleted"] == (e["event_type"] == "message.deleted")
            assert (e["payload"]["text"] == "") == (e["event_type"] == "message.deleted")
            # every message here is edited once before any deletion, which keeps its edited_at
            assert (e["payload"]["edited_at"] is None) == (e["event_type"] == "message.created")
        else:
            assert e["event_type"] in ("member.joined", "member.left") and e["user_ids"], e
    counts = Counter(e["event_type"] for e in envelopes)
    assert counts == {"chat.created": 1, "member.joined": 4 + 4 * 2, "member.left": 4 * 2,
                      "message.created": 60, "message.edited": 60, "message.deleted": 4 * 5}
    assert models.Chat.objects.get(pk=chat.id).version == total - 1


@pytest.mark.django_db(transaction=True)
def test_a_relay_killed_mid_burst_loses_nothing_and_resends_at_most_one_batch(kafka, ann, worker):
    batch_size = 25
    total = write_burst(ann, chats=4, messages=299)  # 1,200 events
    relay = worker("relay_outbox", "--batch-size", str(batch_size))

    wait_until(lambda: models.OutboxEvent.objects.filter(published_at__isnull=False).count() >= 200,
               message="the relay to publish part of the burst")
    relay.process.send_signal(signal.SIGKILL)
    relay.process.wait(timeout=10)
    assert 0 < pending_count() < total, "the kill should land mid-burst"

    call_command("relay_outbox", "--once", "--batch-size", str(batch_size))

    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=total)
    counts = Counter(json.loads(record.value)["event_id"] for record in records)
    assert set(counts) == {str(e) for e in models.OutboxEvent.objects.values_list("event_id", flat=True)}
    duplicates = sum(counts.values()) - len(counts)
    assert duplicates <= batch_size  # only the batch that was in flight when the relay died
    assert pending_count() == 0


@pytest.mark.django_db(transaction=True)
def test_events_written_while_the_broker_is_down_wait_unmarked_and_arrive_when_it_is_back(ann, worker, settings):
    port = free_port()
    broker = start_kafka(port=port)
    settings.KAFKA_BOOTSTRAP_SERVERS = broker.address
    settings.KAFKA_TOPIC = "chat-events"
    try:
        relay = worker("relay_outbox", "--poll-interval", "0.1")
        write_burst(ann, chats=1, messages=4, prefix="before")
        wait_until(lambda: pending_count() == 0, message="the relay to publish the first events")

        before = set(models.OutboxEvent.objects.values_list("event_id", flat=True))
        broker.stop()
        during = write_burst(ann, chats=2, messages=9, prefix="during")
        wait_until(lambda: "unavailable" in relay.output(), timeout=60, message="the relay to log the outage")
        assert pending_count() == during  # nothing was marked while the broker was away

        broker = start_kafka(port=port)  # memory storage: the new broker starts empty
        wait_until(lambda: pending_count() == 0, timeout=90, message="the relay to catch up")
        assert relay.process.poll() is None, "the relay must survive the outage"

        records = read_topic(broker.address, "chat-events", at_least=during)
        sent = {json.loads(record.value)["event_id"] for record in records}
        written_during = {
            str(event_id) for event_id in models.OutboxEvent.objects.values_list("event_id", flat=True)
            if event_id not in before
        }
        assert len(written_during) == during
        assert written_during <= sent
    finally:
        broker.stop()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="several relays need SKIP LOCKED: PostgreSQL only (one relay on SQLite)")
@pytest.mark.django_db(transaction=True)
def test_two_relays_on_postgresql_publish_every_row_once_in_per_chat_order(kafka, make_user, worker):
    relays = [worker("relay_outbox", "--batch-size", "10", "--poll-interval", "0.05") for _ in range(2)]
    for relay in relays:  # both running before the writes, or the first may drain them alone
        wait_until(lambda: "connected to Kafka" in relay.output(), message="the relay to connect")
    total = write_concurrently([make_user(f"writer{n}") for n in range(3)], chats=3, messages=60)

    wait_until(lambda: pending_count() == 0, message="the relays to drain the outbox")
    assert [relay.stop() for relay in relays] == [0, 0]
    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=total)
    counts = Counter(json.loads(record.value)["event_id"] for record in records)
    assert len(counts) == total
    assert max(counts.values()) == 1, "no row is published twice in the normal case"
    assert_per_chat_order(envelopes_of(sorted(records, key=lambda r: (r.partition, r.offset))))
    shares = [int(re.search(r"it relayed (\d+) events", relay.output()).group(1)) for relay in relays]
    assert sum(shares) == total and min(shares) > 0, shares


@pytest.mark.django_db(transaction=True)
def test_the_relay_wakes_on_the_writers_signal_long_before_its_poll_interval(kafka, ann, worker, redis_server, settings):
    """A Redis message that the writer publishes once its transaction has committed."""
    settings.REDIS_URL = f"redis://{redis_server.address}/0"
    relay = worker("relay_outbox", "--poll-interval", "600")
    wait_until(lambda: "waking on Redis messages chat_outbox" in relay.output(), message="the relay to start")
    wait_until(lambda: "connected to Kafka" in relay.output(), message="the relay to connect")
    for burst in range(3):  # each write wakes it again, not only the first
        write_burst(ann, chats=1, messages=1, prefix=f"burst {burst}")
        wait_until(lambda: pending_count() == 0, timeout=60, message="a signal to wake the relay")


def test_the_wakeup_returns_as_soon_as_it_has_subscribed_so_the_relay_looks_again_before_it_waits(
    redis_server, settings
):
    """A commit between the relay's last look and its subscription publishes to nobody; only a look after
    the subscription finds that row (a clean CI run waited out a 600 s poll interval on exactly that)."""
    settings.REDIS_URL = f"redis://{redis_server.address}/0"
    wakeup, stop = OutboxWakeup(), StopFlag(signals=())

    def wait_in_thread() -> threading.Thread:
        waiting = threading.Thread(target=wakeup.wait, args=(600, stop), daemon=True)
        waiting.start()
        return waiting

    try:
        first = wait_in_thread()
        first.join(timeout=30)
        assert not first.is_alive(), "the first wait subscribed and then waited instead of returning"
        second = wait_in_thread()
        assert second.is_alive()  # subscribed now: it waits for a writer
        redis.Redis.from_url(settings.REDIS_URL).publish(CHANNEL, b"")
        second.join(timeout=30)
        assert not second.is_alive(), "the writer's signal did not wake the subscribed wait"
    finally:
        stop.set()


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_writes_still_commit_and_the_relay_polls_instead_and_says_so(kafka, ann, worker, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    relay = worker("relay_outbox", "--poll-interval", "0.2")
    wait_until(lambda: "Redis wake-ups unavailable" in relay.output(), message="the relay to notice")
    write_burst(ann, chats=1, messages=3)  # the writers' signal fails; the writes do not
    assert models.OutboxEvent.objects.count() == 4
    wait_until(lambda: pending_count() == 0, timeout=60, message="the relay to find the rows by polling")
    assert relay.process.poll() is None


@pytest.mark.django_db
def test_a_row_kafka_refuses_is_parked_with_its_error_and_does_not_block_the_rows_behind_it(kafka, ann, client):
    write_burst(ann, chats=1, messages=1, prefix="before")
    poison = models.OutboxEvent.objects.create(
        event_id="00000000-0000-4000-8000-000000000001",
        event_type="message.created",
        chat_id="00000000-0000-4000-8000-000000000002",
        envelope={"payload": "x" * 2_000_000},  # over the producer's 1 MB max_request_size
    )
    write_burst(ann, chats=1, messages=2, prefix="after")

    call_command("relay_outbox", "--once")

    poison.refresh_from_db()
    assert poison.published_at is None and poison.failed_at is not None
    assert "MessageSizeTooLarge" in poison.last_error
    assert pending_count() == 0
    records = read_topic(django_settings.KAFKA_BOOTSTRAP_SERVERS, kafka, at_least=5)
    assert len(records) == 5
    assert client.get("/api/health/").json()["outbox_parked"] == 1

    call_command("relay_outbox", "--once", "--retry-failed")  # back in the queue, refused again
    poison.refresh_from_db()
    assert poison.failed_at is not None and pending_count() == 0


@pytest.mark.django_db
def test_pruning_deletes_only_published_rows_older_than_the_retention(ann):
    write_burst(ann, chats=1, messages=3)
    from datetime import timedelta

    from django.utils import timezone

    rows = list(models.OutboxEvent.objects.order_by("id"))
    models.OutboxEvent.objects.filter(id=rows[0].id).update(published_at=timezone.now() - timedelta(days=8))
    models.OutboxEvent.objects.filter(id=rows[1].id).update(published_at=timezone.now() - timedelta(days=6))

    assert prune_published(timedelta(days=7)) == 1
    assert list(models.OutboxEvent.objects.order_by("id").values_list("id", flat=True)) == [r.id for r in rows[1:]]


@pytest.mark.django_db
def test_health_reports_the_pending_count_and_the_age_of_the_oldest_pending_row(ann, client):
    write_burst(ann, chats=1, messages=2)
    health = client.get("/api/health/").json()
    assert health["outbox_pending"] == 3
    assert health["outbox_oldest_pending_seconds"] >= 0


@pytest.mark.parametrize(
    "flags, complaint",
    [
        (["--batch-size", "0"], "invalid positive integer value: '0'"),
        (["--batch-size", "ten"], "invalid positive integer value: 'ten'"),
        (["--poll-interval", "-1"], "invalid positive number value: '-1'"),
        (["--prune-after", "7 days"], "invalid duration"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_flags_get_a_usage_error_and_exit_code_2(flags, complaint, tmp_path):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    result = subprocess.run(
        [sys.executable, "manage.py", "relay_outbox", *flags], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert result.returncode == 2
    assert "usage: manage.py relay_outbox" in result.stderr
    assert complaint in result.stderr


def test_without_a_broker_address_the_relay_says_how_to_get_one(settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = ""
    with pytest.raises(CommandError, match="KAFKA_BOOTSTRAP_SERVERS is not set"):
        call_command("relay_outbox", "--once")


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_an_idle_relay_cleanly(kafka, worker):
    relay = worker("relay_outbox")
    wait_until(lambda: "connected to Kafka" in relay.output(), message="the relay to connect")
    assert relay.stop(timeout=10) == 0
    assert "relay_outbox stopped" in relay.output()
