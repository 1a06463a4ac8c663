"""The topic read from the start at the end of the run: repeated event ids, missing events, order per chat."""

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
                                    "chat_id": envelope["chat_id"], "seq": payload.get("seq")})
                last = time.monotonic()
        records.sort(key=lambda r: (r["partition"], r["offset"]))
        return records
    finally:
        consumer.close()


def check(records: list[dict], chat_ids: list[str], truth_seqs: dict[str, set[int]]) -> dict:
    """For the scenario's chats: copies beyond the first of an event id, committed messages with no event in
    the topic, and seqs whose first copy comes after a higher seq of the same chat."""
    chats = set(chat_ids)
    mine = [r for r in records if r["chat_id"] in chats]
    copies = Counter(r["event_id"] for r in mine)
    seen_seqs: dict[str, set[int]] = defaultdict(set)
    highest: dict[str, int] = defaultdict(int)
    order = 0
    partitions_per_chat: dict[str, set[int]] = defaultdict(set)
    for r in mine:
        partitions_per_chat[r["chat_id"]].add(r["partition"])
        if r["event_type"] != "message.created" or r["seq"] in seen_seqs[r["chat_id"]]:
            continue
        seen_seqs[r["chat_id"]].add(r["seq"])
        if r["seq"] < highest[r["chat_id"]]:
            order += 1
        highest[r["chat_id"]] = max(highest[r["chat_id"]], r["seq"])
    missing = sum(len(seqs - seen_seqs[chat_id]) for chat_id, seqs in truth_seqs.items())
    return {
        "kafka_records": len(mine),
        "kafka_duplicates": sum(n - 1 for n in copies.values()),
        "kafka_missing": missing,
        "kafka_order_violations": order,
        "kafka_chats_on_several_partitions": sum(1 for parts in partitions_per_chat.values() if len(parts) > 1),
    }
