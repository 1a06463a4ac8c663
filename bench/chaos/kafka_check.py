"""The topic read from the start at the end of the run: repeated event ids, missing events, order per chat
(messages by seq, every change by the chat's version)."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

from kafka import KafkaConsumer, TopicPartition

IDLE_S = 3.0  # stop after this long without a record (Tansu's end offsets are wrong: no "read to the end")
CAP_S = 120.0


def read_topic(servers: str, topic: str) -> list[dict]:
    """Every record's envelope essentials, in partition then offset order."""
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[dict] = []
        started = last = time.monotonic()
        while time.monotonic() - last < IDLE_S and time.monotonic() - started < CAP_S:
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                for record in batch:
                    envelope = json.loads(record.value)
                    payload = envelope.get("payload") or {}
                    records.append({"partition": tp.partition, "offset": record.offset,
                                    "event_id": envelope["event_id"], "event_type": envelope["event_type"],
                                    "chat_id": envelope["chat_id"], "seq": payload.get("seq"),
                                    "version": envelope.get("version")})
                last = time.monotonic()
        records.sort(key=lambda r: (r["partition"], r["offset"]))
        return records
    finally:
        consumer.close()


VERSIONED = {"message.created", "message.edited", "message.deleted", "member.joined", "member.left"}


def check(records: list[dict], chat_ids: list[str], truth: dict[str, dict]) -> dict:
    """For the scenario's chats: copies beyond the first of an event id; committed messages with no event in
    the topic, and versions 1..the chat's version with no change in it (every change has its event); seqs and
    versions whose first copy comes after a higher one of the same chat."""
    chats = set(chat_ids)
    mine = [r for r in records if r["chat_id"] in chats]
    copies = Counter(r["event_id"] for r in mine)
    seen_seqs: dict[str, set[int]] = defaultdict(set)
    seen_versions: dict[str, set[int]] = defaultdict(set)
    highest: dict[str, int] = defaultdict(int)
    highest_version: dict[str, int] = defaultdict(int)
    order = version_order = 0
    partitions_per_chat: dict[str, set[int]] = defaultdict(set)
    for r in mine:
        chat = r["chat_id"]
        partitions_per_chat[chat].add(r["partition"])
        version = r.get("version")
        if r["event_type"] in VERSIONED and isinstance(version, int) and version not in seen_versions[chat]:
            seen_versions[chat].add(version)
            if version < highest_version[chat]:
                version_order += 1
            highest_version[chat] = max(highest_version[chat], version)
        if r["event_type"] != "message.created" or r["seq"] in seen_seqs[chat]:
            continue
        seen_seqs[chat].add(r["seq"])
        if r["seq"] < highest[chat]:
            order += 1
        highest[chat] = max(highest[chat], r["seq"])
    missing = sum(len(chat["seqs"] - seen_seqs[chat_id]) for chat_id, chat in truth.items())
    missing_versions = sum(len(set(range(1, chat["version"] + 1)) - seen_versions[chat_id])
                           for chat_id, chat in truth.items())
    return {
        "kafka_records": len(mine),
        "kafka_duplicates": sum(n - 1 for n in copies.values()),
        "kafka_missing": missing,
        "kafka_missing_versions": missing_versions,
        "kafka_order_violations": order,
        "kafka_version_order_violations": version_order,
        "kafka_changes": sum(1 for r in mine if r["event_type"] in ("message.edited", "message.deleted")),
        "kafka_chats_on_several_partitions": sum(1 for parts in partitions_per_chat.values() if len(parts) > 1),
    }
