"""forward_events on the real broker (Tansu) and the real Redis, run as real processes."""

import asyncio
import json
import re
import uuid

import pytest
from django.conf import settings as django_settings
from kafka import KafkaAdminClient

from chats.pipeline.forwarder import RecentEventIds, groups_for
from chats.pipeline.kafka_clients import create_consumer, create_producer
from chats.pipeline.wire import (
    LOBBY_GROUP,
    MESSAGE_TYPES,
    VERSIONED_TYPES,
    InvalidEnvelope,
    chat_group,
    group_message,
    parse_envelope,
    user_group,
)
from chats.runtime.embedded import free_port, start_redis
from tests.helpers import wait_until


def envelope(chat_id: str, seq: int, event_type: str = "message.created", version: int | None = None) -> dict:
    """An envelope as the relay publishes it. A message's `version` is its seq unless given (a chat whose only
    changes are its owner's messages); chat.created carries version 0, chat.deleted the chat's last."""
    if event_type in MESSAGE_TYPES:
        deleted = event_type == "message.deleted"
        payload = {"id": str(uuid.uuid4()), "chat_id": chat_id, "seq": seq, "text": "" if deleted else f"m{seq}",
                   "author": "ann", "created_at": "2026-11-29T04:00:00Z",
                   "edited_at": "2026-11-29T04:01:00Z" if event_type == "message.edited" else None,
                   "deleted": deleted, "version": seq if version is None else version}
        version = payload["version"]
    else:
        payload = {"id": chat_id, "title": "Lunch", "owner": "ann", "created_at": "2026-11-29T04:00:00Z",
                   "last_seq": seq, "visibility": "public", "member_count": 1, "version": seq}
        version = 0 if event_type == "chat.created" else seq
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "occurred_at": "2026-11-29T04:00:00Z",
            "chat_id": chat_id, "version": version, "payload": payload}


def produce(values: list[tuple[str, bytes]]) -> None:
    """Records as the relay writes them: key = chat id, header event_type."""
    producer = create_producer()
    try:
        for key, value in values:
            producer.send(django_settings.KAFKA_TOPIC, key=key.encode(), value=value,
                          headers=[("event_type", b"message.created")])
        producer.flush()
    finally:
        producer.close()


def event_id_of(message: dict) -> str:
    return json.loads(message["frame"])["event_id"]


def as_record(value: dict) -> tuple[str, bytes]:
    return value["chat_id"], json.dumps(value).encode()


async def listen(layer, *groups: str) -> str:
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return channel


async def receive(layer, channel: str, count: int, timeout: float = 30) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), timeout) for _ in range(count)]


async def received_nothing_more(layer, channel: str, within: float = 1.0) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), within)
    except asyncio.TimeoutError:
        return True
    return False


def committed(group: str) -> int:
    """Sum of the group's committed offsets on the test topic."""
    admin = KafkaAdminClient(bootstrap_servers=django_settings.KAFKA_BOOTSTRAP_SERVERS)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == django_settings.KAFKA_TOPIC and o.offset > 0)


async def start_forwarder(worker, *args, **env):
    forwarder = worker("forward_events", *args, **env)
    await asyncio.to_thread(wait_until, lambda: "partitions assigned: [" in forwarder.output(), 60,
                            message="the forwarder to join its group")
    return forwarder


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_events_reach_the_chat_group_and_chat_events_the_lobby_too(kafka, channel_layer, worker):
    chat_id = str(uuid.uuid4())
    chat_channel = await listen(channel_layer, chat_group(chat_id))
    lobby_channel = await listen(channel_layer, LOBBY_GROUP)
    events = [envelope(chat_id, 0, "chat.created"), envelope(chat_id, 1), envelope(chat_id, 2),
              envelope(chat_id, 2, "chat.deleted")]
    produce([as_record(e) for e in events])
    forwarder = await start_forwarder(worker, "--group", "forwarder-delivery")

    got = await receive(channel_layer, chat_channel, 4)
    assert got == [group_message(e) for e in events]
    created, first, second, deleted = events
    assert [json.loads(m["frame"]) for m in got] == [  # the frames clients get (DESIGN.md), rendered once here
        {"type": "chat.created", "event_id": created["event_id"], "chat_id": chat_id, "version": 0,
         "chat": created["payload"]},
        {"type": "message.created", "event_id": first["event_id"], "chat_id": chat_id, "version": 1,
         "message": first["payload"]},
        {"type": "message.created", "event_id": second["event_id"], "chat_id": chat_id, "version": 2,
         "message": second["payload"]},
        {"type": "chat.deleted", "event_id": deleted["event_id"], "chat_id": chat_id, "version": 2},
    ]
    assert [m["seq"] for m in got] == [None, 1, 2, None]
    lobby = await receive(channel_layer, lobby_channel, 2)
    assert [m["event_type"] for m in lobby] == ["chat.created", "chat.deleted"]
    assert await received_nothing_more(channel_layer, lobby_channel)

    await asyncio.to_thread(wait_until, lambda: committed("forwarder-delivery") == 4, 20,
                            message="the offsets to be committed after the send")
    assert forwarder.stop() == 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_private_events_reach_their_users_groups_and_not_the_lobby(kafka, channel_layer, worker):
    created, joined, read = (addressed("chat.created", [1], "private"), addressed("member.joined", [2], "private"),
                             addressed("chat.read", [2]))
    anns, bobs = await listen(channel_layer, user_group(1)), await listen(channel_layer, user_group(2))
    lobby = await listen(channel_layer, LOBBY_GROUP)
    streams = await listen(channel_layer, *(chat_group(e["chat_id"]) for e in (created, joined, read)))
    produce([as_record(e) for e in (created, joined, read)])
    forwarder = await start_forwarder(worker, "--group", "forwarder-private")

    assert [m["event_id"] for m in await receive(channel_layer, anns, 1)] == [created["event_id"]]
    # Three chats, so three keys: Kafka orders them by partition only.
    got = sorted(await receive(channel_layer, bobs, 2), key=lambda m: m["event_type"], reverse=True)
    assert [json.loads(m["frame"]) for m in got] == [
        {"type": "member.joined", "event_id": joined["event_id"], "chat_id": joined["chat_id"], "version": 3,
         "member": joined["payload"]["member"], "chat": joined["payload"]["chat"]},
        {"type": "chat.read", "event_id": read["event_id"], "chat_id": read["chat_id"], "last_read_seq": 1,
         "unread": 0},
    ]
    assert [(m["version"], m["user_ids"]) for m in got] == [(3, [2]), (None, None)]
    # The chat's stream gets its creation and the membership (with the member's id, so that a stream of a
    # private chat can close the sockets of a member who leaves), and never a read position.
    on_streams = await receive(channel_layer, streams, 2)
    assert sorted((m["event_type"], m["event_id"]) for m in on_streams) == sorted(
        [("chat.created", created["event_id"]), ("member.joined", joined["event_id"])])
    assert await received_nothing_more(channel_layer, streams)
    assert await received_nothing_more(channel_layer, lobby, within=0.2)
    assert await received_nothing_more(channel_layer, anns, within=0.2)
    assert forwarder.stop() == 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_edits_and_deletions_reach_their_chat_stream_only_with_their_version_and_the_message_after_them(
    kafka, channel_layer, worker,
):
    chat_id = str(uuid.uuid4())
    stream = await listen(channel_layer, chat_group(chat_id))
    elsewhere = await listen(channel_layer, LOBBY_GROUP, user_group(1), chat_group(uuid.uuid4()))
    events = [envelope(chat_id, 1), envelope(chat_id, 1, "message.edited", version=2),
              envelope(chat_id, 2, version=3), envelope(chat_id, 1, "message.deleted", version=4)]
    produce([as_record(e) for e in events])
    forwarder = await start_forwarder(worker, "--group", "forwarder-edits")

    got = await receive(channel_layer, stream, 4)
    assert got == [group_message(e) for e in events]
    assert [(m["event_type"], m["seq"], m["version"], m["user_ids"]) for m in got] == [
        ("message.created", 1, 1, None), ("message.edited", 1, 2, None), ("message.created", 2, 3, None),
        ("message.deleted", 1, 4, None)]
    frames = [json.loads(m["frame"]) for m in got]
    assert frames == [
        {"type": e["event_type"], "event_id": e["event_id"], "chat_id": chat_id, "version": e["version"],
         "message": e["payload"]} for e in events]
    assert [(f["message"]["text"], f["message"]["deleted"]) for f in frames] == [
        ("m1", False), ("m1", False), ("m2", False), ("", True)]
    assert await received_nothing_more(channel_layer, elsewhere)
    await asyncio.to_thread(wait_until, lambda: committed("forwarder-edits") == 4, 20,
                            message="the offsets to be committed after the send")
    assert forwarder.stop() == 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_repeated_event_id_is_forwarded_once(kafka, channel_layer, worker):
    chat_id = str(uuid.uuid4())
    channel = await listen(channel_layer, chat_group(chat_id))
    first, second = envelope(chat_id, 1), envelope(chat_id, 2)
    produce([as_record(first), as_record(first), as_record(second), as_record(first)])
    await start_forwarder(worker, "--group", "forwarder-dedup")

    got = await receive(channel_layer, channel, 2)
    assert [event_id_of(m) for m in got] == [first["event_id"], second["event_id"]]
    assert await received_nothing_more(channel_layer, channel)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_record_that_is_not_an_envelope_is_logged_with_its_position_and_skipped(kafka, channel_layer, worker):
    chat_id = str(uuid.uuid4())
    channel = await listen(channel_layer, chat_group(chat_id))
    good = envelope(chat_id, 1)
    produce([(chat_id, b"\xff not json"), (chat_id, b'{"event_id": "x"}'), as_record(good)])
    forwarder = await start_forwarder(worker, "--group", "forwarder-bad-records")

    [message] = await receive(channel_layer, channel, 1)
    assert message == group_message(good)
    log = forwarder.output()
    assert len(re.findall(rf"skipping record {django_settings.KAFKA_TOPIC}\[\d+\]@\d+: ", log)) == 2
    assert "not UTF-8 JSON" in log and "missing" in log
    await asyncio.to_thread(wait_until, lambda: committed("forwarder-bad-records") == 3, 20,
                            message="the bad records to be committed past")
    assert forwarder.process.poll() is None


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_nothing_is_committed_while_redis_is_down_and_it_is_all_sent_when_it_is_back(kafka, worker, settings):
    port = free_port()
    redis = start_redis(port=port)
    try:
        forwarder = await start_forwarder(worker, "--group", "forwarder-redis-down",
                                          REDIS_URL=f"redis://127.0.0.1:{port}/0")
        redis.stop()
        chat_id = str(uuid.uuid4())
        events = [envelope(chat_id, seq) for seq in (1, 2, 3)]
        produce([as_record(e) for e in events])
        await asyncio.to_thread(wait_until, lambda: "channel layer unavailable" in forwarder.output(), 30,
                                message="the forwarder to notice Redis is gone")
        assert committed("forwarder-redis-down") == 0
        assert forwarder.process.poll() is None, "the forwarder survives the outage"

        redis = start_redis(port=port)
        await asyncio.to_thread(wait_until, lambda: committed("forwarder-redis-down") == 3, 60,
                                message="the forwarder to send and commit once Redis is back")
        assert "forwarded 3" in await asyncio.to_thread(
            wait_until, lambda: re.search(r"forwarded 3\b", forwarder.output()) and forwarder.output(), 30,
            message="the forwarder's report")
    finally:
        redis.stop()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_two_forwarders_in_one_group_share_the_partitions(kafka, channel_layer, worker):
    first = await start_forwarder(worker, "--group", "forwarder-pair")
    second = worker("forward_events", "--group", "forwarder-pair")

    def assignments():
        found = [re.findall(r"partitions assigned: \[([\d, ]*)\]", w.output()) for w in (first, second)]
        latest = [set(map(int, filter(None, f[-1].split(", ")))) if f else None for f in found]
        return latest if all(latest) and not (latest[0] & latest[1]) else None

    shares = await asyncio.to_thread(wait_until, assignments, 60, message="both forwarders to own partitions")
    assert shares[0] | shares[1] == set(range(django_settings.KAFKA_TOPIC_PARTITIONS))

    chats = [str(uuid.uuid4()) for _ in range(24)]
    channel = await listen(channel_layer, *(chat_group(c) for c in chats))
    events = [envelope(c, 1) for c in chats]
    produce([as_record(e) for e in events])
    got = await receive(channel_layer, channel, len(events))
    assert sorted(event_id_of(m) for m in got) == sorted(e["event_id"] for e in events)
    assert await received_nothing_more(channel_layer, channel)
    assert [first.stop(), second.stop()] == [0, 0]


@pytest.mark.parametrize(
    "value, problem",
    [
        (b"", "not UTF-8 JSON"),
        (b"[" * 100_000, "not UTF-8 JSON"),  # nested past the parser's recursion limit
        (b"\xff{}", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"event_id": "1"}', "missing"),
        (json.dumps({**envelope(str(uuid.uuid4()), 1), "event_type": "chat.renamed"}).encode(), "unknown event_type"),
        (json.dumps({**envelope(str(uuid.uuid4()), 1), "chat_id": "nope"}).encode(), "chat_id is not a UUID"),
        (json.dumps({**envelope(str(uuid.uuid4()), 1), "payload": []}).encode(), "payload is not an object"),
        (json.dumps({**envelope(str(uuid.uuid4()), 1), "payload": {"seq": "1"}}).encode(), "positive integer seq"),
    ],
)
def test_parse_envelope_refuses_what_is_not_an_envelope(value, problem):
    with pytest.raises(InvalidEnvelope, match=problem):
        parse_envelope(value)


def addressed(event_type: str, user_ids, visibility: str = "public") -> dict:
    chat_id = str(uuid.uuid4())
    chat = {"id": chat_id, "title": "Lunch", "owner": "ann", "created_at": "2026-11-29T04:00:00Z", "last_seq": 0,
            "visibility": visibility, "member_count": 2}
    payload = {
        "chat.created": chat, "chat.deleted": chat,
        "member.joined": {"chat_id": chat_id, "member": {"username": "bob"}, "chat": chat},
        "member.left": {"chat_id": chat_id, "member": {"username": "bob"}, "chat": chat},
        "chat.read": {"chat_id": chat_id, "username": "bob", "last_read_seq": 1, "unread": 0},
    }[event_type]
    value = {"event_id": str(uuid.uuid4()), "event_type": event_type, "occurred_at": "2026-11-29T04:00:00Z",
             "chat_id": chat_id, "payload": payload}
    if event_type in VERSIONED_TYPES:
        value["version"] = 3
    if user_ids is not None:
        value["user_ids"] = user_ids
    return value


@pytest.mark.parametrize(
    "event_type, visibility, user_ids, groups",
    [
        ("chat.created", "public", None, ["chat.{chat}", LOBBY_GROUP]),
        ("chat.deleted", "public", None, ["chat.{chat}", LOBBY_GROUP]),
        ("chat.created", "private", [1], ["chat.{chat}", "user.1"]),
        ("chat.deleted", "private", [1, 2, 3], ["chat.{chat}", "user.1", "user.2", "user.3"]),
        # A membership is a change of the chat (its stream shows who joined and left) and the member's own news.
        ("member.joined", "private", [2], ["chat.{chat}", "user.2"]),
        ("member.joined", "public", [2], ["chat.{chat}", "user.2"]),
        ("member.left", "public", [2], ["chat.{chat}", "user.2"]),
        ("member.left", "private", [2], ["chat.{chat}", "user.2"]),
        ("chat.read", "public", [2], ["user.2"]),
    ],
)
def test_events_are_routed_by_the_envelope_alone(event_type, visibility, user_ids, groups):
    value = parse_envelope(json.dumps(addressed(event_type, user_ids, visibility)).encode())
    assert groups_for(value) == [group.format(chat=value["chat_id"]) for group in groups]
    assert user_group(7) == "user.7"


@pytest.mark.parametrize("event_type", ["message.created", "message.edited", "message.deleted"])
def test_a_message_its_edit_and_its_deletion_go_to_its_chat_stream_only(event_type):
    value = parse_envelope(json.dumps(envelope(str(uuid.uuid4()), 1, event_type, version=5)).encode())
    assert groups_for(value) == [chat_group(value["chat_id"])]
    assert group_message(value)["version"] == 5


def versioned(event_type: str) -> dict:
    if event_type in MESSAGE_TYPES:
        return envelope(str(uuid.uuid4()), 1, event_type, version=2)
    return addressed(event_type, [2])


@pytest.mark.parametrize("event_type", sorted(VERSIONED_TYPES))
@pytest.mark.parametrize("version", ["missing", None, 0, -1, "3", 2.0, 1.5, True, [3]])
def test_parse_envelope_refuses_a_change_of_content_without_a_positive_integer_version(event_type, version):
    value = versioned(event_type)
    if version == "missing":
        del value["version"]
    else:
        value["version"] = version
    with pytest.raises(InvalidEnvelope, match=f"{event_type} needs a positive integer version"):
        parse_envelope(json.dumps(value).encode())


@pytest.mark.parametrize("event_type", sorted(VERSIONED_TYPES))
def test_parse_envelope_takes_a_change_of_content_with_a_positive_integer_version(event_type):
    value = versioned(event_type)
    value["version"] = 2**40  # a chat's version is a bigint: no upper bound on the wire
    assert parse_envelope(json.dumps(value).encode())["version"] == 2**40


@pytest.mark.parametrize("event_type", ["chat.created", "chat.deleted", "chat.read"])
def test_events_that_change_no_content_need_no_version(event_type):
    value = addressed(event_type, [1], "private" if event_type != "chat.read" else "public")
    value.pop("version", None)
    assert "version" not in parse_envelope(json.dumps(value).encode())


@pytest.mark.parametrize(
    "event_type, visibility, user_ids",
    [
        ("chat.created", "private", None),  # a private chat's creation without its owner: nowhere to send it
        ("chat.deleted", "private", "1"),
        ("member.joined", "public", None),
        ("member.left", "public", [1, "2"]),
        ("chat.read", "public", [0]),
        ("chat.read", "public", [True]),
    ],
)
def test_parse_envelope_refuses_an_addressed_event_without_its_user_ids(event_type, visibility, user_ids):
    with pytest.raises(InvalidEnvelope, match="needs user_ids"):
        parse_envelope(json.dumps(addressed(event_type, user_ids, visibility)).encode())


def test_parse_envelope_refuses_a_member_event_about_another_chat():
    value = addressed("member.joined", [2])
    value["payload"]["chat_id"] = str(uuid.uuid4())
    with pytest.raises(InvalidEnvelope, match="envelope's chat_id"):
        parse_envelope(json.dumps(value).encode())


def test_recent_event_ids_forget_the_oldest_beyond_their_capacity():
    recent = RecentEventIds(capacity=2)
    for event_id in ("a", "b", "c"):
        recent.add(event_id)
    assert "a" not in recent and "b" in recent and "c" in recent


def test_the_forwarders_fetch_waits_as_long_as_kafka_fetch_max_wait_ms_says(kafka, settings):
    settings.KAFKA_FETCH_MAX_WAIT_MS = 123
    consumer = create_consumer(kafka, f"group-{uuid.uuid4().hex}")
    try:
        assert consumer.config["fetch_max_wait_ms"] == 123
    finally:
        consumer.close()
