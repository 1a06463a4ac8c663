"""Compare Channels' Redis channel layers for the fan-out of one busy chat.

Why this exists: every chat message reaches its websocket clients through `group_send("chat.<id>")`, sent
by the forwarder process and received by the consumers of a web (daphne) process. Which layer we use, and
with what settings, decides how fast the forwarder can push, how late frames reach clients, and whether
frames are lost under a burst, and if so, whether anyone finds out. This script measures exactly that
shape: N members of ONE group living in ONE receiver process with one event loop (each member a task doing
`await layer.receive(channel)` in a loop, like one consumer), and a sender in ANOTHER process.

Layers compared:
  core-cap100    channels_redis.core.RedisChannelLayer, capacity=100 (the default)
  core-cap100k   channels_redis.core.RedisChannelLayer, capacity=100_000, expiry=60
  pubsub         channels_redis.pubsub.RedisPubSubChannelLayer

Paces: "burst" sends M messages as fast as group_send returns; "paced" sends at a fixed rate (default 2/s
for 10 s = 20 messages), like a busy chat.

Reported per layer and pace: group_send calls/s at the sender (paced: the rate kept), delivered msgs/s
(deliveries / time from the first send to the last delivery), latency p50/p99 (receive time - sent_at),
lost (expected - distinct deliveries), duplicates, whether each member saw seqs in order, how many lines
channels_redis logged (the only trace a drop leaves), and members whose receive() raised.

Every wait is bounded: the receiver stops when everything arrived, or when nothing arrived for
IDLE_TIMEOUT seconds after the sender finished, or DRAIN_TIMEOUT after it; what is missing then is lost.

    cd /work/main && .venv/bin/python bench/channel_layers.py [--members 1000] [--messages 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

GROUP = "chat.x"
SETUP_TIMEOUT = 90.0  # receiver: all members created and joined
IDLE_TIMEOUT = 5.0  # receiver: nothing delivered for this long after the sender finished -> stop
DRAIN_TIMEOUT = 45.0  # receiver: hard stop this long after the sender finished
SETTLE = 0.5  # after the last group_add, so SUBSCRIBE commands have reached Redis before READY
# Consumers joining at once. More than ~100 concurrent group_adds on the core layer fail with
# MaxConnectionsError: redis-py 8's pool defaults to max_connections=100 (and raises rather than waits).
JOIN_CONCURRENCY = 50

# redis-py 8 defaults socket_timeout to 5 s, the same as the core layer's BZPOPMIN timeout, so an idle
# receive() raises redis TimeoutError after 5 s (channels_redis#422): the core layer needs a longer one.
CORE_HOST = {"socket_timeout": 10}

# name: (module, class, layer config, extra connection options for the host)
LAYERS = {
    "core-cap100": ("channels_redis.core", "RedisChannelLayer", {"capacity": 100}, CORE_HOST),
    "core-cap100k": ("channels_redis.core", "RedisChannelLayer", {"capacity": 100_000, "expiry": 60}, CORE_HOST),
    "pubsub": ("channels_redis.pubsub", "RedisPubSubChannelLayer", {}, {}),
}


# --------------------------------------------------------------------------------------------- helpers


def make_layer(name: str, address: str):
    module_name, class_name, config, host_options = LAYERS[name]
    module = __import__(module_name, fromlist=[class_name])
    url = f"redis://{address}/0"
    host = {"address": url, **host_options} if host_options else url
    return getattr(module, class_name)(hosts=[host], **config)


class LogCounter(logging.Handler):
    """Counts what channels_redis logs (INFO and up): the only trace a dropped message may leave."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.sample: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.sample is None:
            self.sample = f"{record.levelname}: {record.getMessage()}"

    @classmethod
    def attach(cls) -> LogCounter:
        counter = cls()
        logger = logging.getLogger("channels_redis")
        logger.setLevel(logging.INFO)
        logger.addHandler(counter)
        return counter


def envelope(seq: int) -> dict:
    """A message.created envelope shaped like the forwarder's, ~300 bytes as JSON."""
    chat_id = "5b0f6a52-3c1e-4d7b-9a51-0c2f8e9d4a17"
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "message.created",
        "chat_id": chat_id,
        "payload": {
            "seq": seq,
            "chat_id": chat_id,
            "message_id": str(uuid.uuid4()),
            "author": "user-1234",
            "text": "Lorem ipsum dolor sit amet.",
        },
    }


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


# -------------------------------------------------------------------------------------------- receiver


@dataclass
class Deliveries:
    """What the members saw: per member, the seqs in arrival order; overall, latencies and times."""

    members: int
    seqs: list[list[int]] = field(init=False)
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # members whose receive() raised, by exception
    first_at: float | None = None
    last_at: float | None = None

    def __post_init__(self) -> None:
        self.seqs = [[] for _ in range(self.members)]

    def record(self, member: int, message: dict) -> None:
        now = time.time()
        self.seqs[member].append(message["seq"])
        self.latencies.append(now - message["sent_at"])
        self.first_at = self.first_at or now
        self.last_at = now

    @property
    def total(self) -> int:
        return len(self.latencies)

    def summary(self, messages: int) -> dict:
        distinct = sum(len(set(seqs)) for seqs in self.seqs)
        latencies = sorted(self.latencies)
        return {
            "expected": self.members * messages,
            "received": self.total,
            "lost": self.members * messages - distinct,
            "duplicates": self.total - distinct,
            "members_with_loss": sum(len(set(seqs)) < messages for seqs in self.seqs),
            "in_order": all(a <= b for seqs in self.seqs for a, b in zip(seqs, seqs[1:])),
            "member_errors": dict(self.errors),
            "latency_p50_ms": None if not latencies else percentile(latencies, 0.50) * 1000,
            "latency_p99_ms": None if not latencies else percentile(latencies, 0.99) * 1000,
            "first_delivery_at": self.first_at,
            "last_delivery_at": self.last_at,
        }


async def member(layer, index: int, joining: asyncio.Semaphore, joined: list[int], deliveries: Deliveries) -> None:
    """One websocket consumer: a channel of its own, in the group, receiving until cancelled.

    An exception ends the member, as it would end a consumer (and its websocket); it is counted.
    """
    try:
        async with joining:
            channel = await layer.new_channel()
            await layer.group_add(GROUP, channel)
        joined[0] += 1
        while True:
            deliveries.record(index, await layer.receive(channel))
    except Exception as error:
        deliveries.errors[f"{type(error).__module__}.{type(error).__name__}"] += 1


async def wait_for_deliveries(deliveries: Deliveries, expected: int, sender_done) -> str:
    """Until all `expected` arrived, or the stream went quiet / ran too long after the sender finished."""
    done_at = None
    while deliveries.total < expected:
        await asyncio.sleep(0.05)
        if done_at is None:
            done_at = time.time() if sender_done.is_set() else None
            continue
        quiet_since = max(done_at, deliveries.last_at or 0)
        if time.time() - quiet_since > IDLE_TIMEOUT:
            return "idle timeout"
        if time.time() - done_at > DRAIN_TIMEOUT:
            return "drain timeout"
    return "complete"


async def receive_all(layer_name: str, address: str, members: int, messages: int, ready, sender_done) -> dict:
    logs = LogCounter.attach()
    layer = make_layer(layer_name, address)
    deliveries = Deliveries(members)
    joined, joining = [0], asyncio.Semaphore(JOIN_CONCURRENCY)
    tasks = [asyncio.create_task(member(layer, i, joining, joined, deliveries)) for i in range(members)]
    setup_deadline = time.monotonic() + SETUP_TIMEOUT
    while joined[0] < members:
        if deliveries.errors:
            raise RuntimeError(f"members failed to join: {dict(deliveries.errors)}")
        if time.monotonic() > setup_deadline:
            raise TimeoutError(f"only {joined[0]} of {members} members joined in {SETUP_TIMEOUT}s")
        await asyncio.sleep(0.01)
    await asyncio.sleep(SETTLE)
    ready.set()  # READY: the sender may start
    ended_by = await wait_for_deliveries(deliveries, members * messages, sender_done)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=10)
    return {**deliveries.summary(messages), "ended_by": ended_by, "receiver_log_lines": logs.count,
            "receiver_log_sample": logs.sample}


def receiver_main(layer_name, address, members, messages, ready, sender_done, results) -> None:
    try:
        results.put(asyncio.run(receive_all(layer_name, address, members, messages, ready, sender_done)))
    except BaseException as error:  # report, so the orchestrator doesn't wait for nothing
        results.put({"error": f"receiver: {error!r}"})


# ---------------------------------------------------------------------------------------------- sender


async def send_all(layer_name: str, address: str, messages: int, interval: float) -> dict:
    """`messages` group_sends, back to back (interval 0) or on a fixed schedule."""
    logs = LogCounter.attach()
    layer = make_layer(layer_name, address)
    await layer.group_send("bench.warmup", {"type": "chat.event"})  # opens the connection, outside the timing
    durations, late = [], []
    started = time.time()
    for seq in range(1, messages + 1):
        scheduled = started + (seq - 1) * interval
        if scheduled > time.time():
            await asyncio.sleep(scheduled - time.time())
        call_started = time.time()
        late.append(call_started - scheduled)
        await layer.group_send(GROUP, {"type": "chat.event", "seq": seq, "sent_at": call_started,
                                       "envelope": envelope(seq)})
        durations.append(time.time() - call_started)
    finished = time.time()
    durations.sort()
    # Back to back: calls completed per second. Paced: the rate kept (the pace itself unless the sender fell behind).
    sends_per_s = messages / (finished - started) if interval == 0 else (messages - 1) / (call_started - started)
    return {
        "first_send_at": started,
        "sends_per_s": sends_per_s,
        "behind_schedule_max_ms": max(late) * 1000 if interval else None,
        "send_call_p50_ms": percentile(durations, 0.50) * 1000,
        "send_call_max_ms": durations[-1] * 1000,
        "sender_log_lines": logs.count,
        "sender_log_sample": logs.sample,
    }


def sender_main(layer_name, address, messages, interval, ready, sender_done, results) -> None:
    try:
        if not ready.wait(SETUP_TIMEOUT):
            raise TimeoutError("receiver never became ready")
        results.put(asyncio.run(send_all(layer_name, address, messages, interval)))
    except BaseException as error:
        results.put({"error": f"sender: {error!r}"})
    finally:
        sender_done.set()


# -------------------------------------------------------------------------------------------- one case


def flush_redis(address: str) -> None:
    import redis

    client = redis.Redis.from_url(f"redis://{address}/0")
    client.flushall()
    client.close()


def stop(process) -> None:
    process.join(timeout=15)
    if process.is_alive():
        process.terminate()
        process.join(timeout=5)


def run_case(layer_name: str, pace: str, address: str, members: int, messages: int, interval: float) -> dict:
    """One layer at one pace: a receiver process and a sender process, synchronised on READY.

    It leaves the Redis at `address` as it is (`main` flushes its own server between cases), so `make bench`
    can run it on the service's Redis as the baseline for fan-out.
    """
    ctx = multiprocessing.get_context("spawn")
    ready, sender_done = ctx.Event(), ctx.Event()
    receiver_results, sender_results = ctx.Queue(), ctx.Queue()
    receiver = ctx.Process(target=receiver_main, args=(layer_name, address, members, messages, ready, sender_done,
                                                        receiver_results))
    sender = ctx.Process(target=sender_main, args=(layer_name, address, messages, interval, ready, sender_done,
                                                    sender_results))
    receiver.start()
    sender.start()
    wall = SETUP_TIMEOUT + messages * interval + DRAIN_TIMEOUT + 30
    try:
        sent = sender_results.get(timeout=wall)
        received = receiver_results.get(timeout=wall)
    finally:
        stop(sender)
        stop(receiver)
    case = {"layer": layer_name, "pace": pace, "members": members, "messages": messages, **sent, **received}
    if "error" not in case and case["last_delivery_at"]:
        case["delivered_per_s"] = case["received"] / (case["last_delivery_at"] - case["first_send_at"])
    return case


# ---------------------------------------------------------------------------------------------- report


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def markdown_table(cases: list[dict]) -> str:
    header = ("| layer | pace | members x msgs | group_send/s | send call p50 / max ms | delivered msgs/s "
              "| latency p50 / p99 ms | received | lost | dup | in order | layer log lines (send/recv) | member errors "
              "| ended by |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['layer']} | {c['pace']} | {c['error']} |")
            continue
        lost = fmt(c["lost"])
        if c["lost"]:
            lost = f"**{lost}** ({100 * c['lost'] / c['expected']:.0f} %, {c['members_with_loss']} members)"
        lines.append(
            f"| {c['layer']} | {c['pace']} | {c['members']:,} x {c['messages']} | {fmt(c['sends_per_s'])} "
            f"| {fmt(c['send_call_p50_ms'], 1)} / {fmt(c['send_call_max_ms'], 1)} | {fmt(c.get('delivered_per_s'))} "
            f"| {fmt(c['latency_p50_ms'])} / {fmt(c['latency_p99_ms'])} | {fmt(c['received'])} | {lost} "
            f"| {fmt(c['duplicates'])} | {fmt(c['in_order'])} | {c['sender_log_lines']} / {c['receiver_log_lines']} "
            f"| {fmt(sum(c['member_errors'].values()))} | {c['ended_by']} |"
        )
    return "\n".join(lines)


def machine_facts(address: str) -> dict:
    import redis

    client = redis.Redis.from_url(f"redis://{address}/0")
    redis_version = client.info("server")["redis_version"]
    client.close()
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "channels": version("channels"),
        "channels_redis": version("channels-redis"),
        "redis_py": version("redis"),
        "redis_server": redis_version,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000, help="channels in the one group (default 1000)")
    parser.add_argument("--messages", type=int, default=200, help="group_sends in the burst (default 200)")
    parser.add_argument("--rate", type=float, default=2.0, help="paced group_sends per second (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced run (default 10)")
    parser.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated subset of {list(LAYERS)}")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from chats.runtime.embedded import start_redis

    paces = [("burst", args.messages, 0.0), (f"{args.rate:g}/s x {args.seconds:g}s",
                                              round(args.rate * args.seconds), 1 / args.rate)]
    redis_server = start_redis()
    try:
        facts = machine_facts(redis_server.address)
        print(f"machine: {json.dumps(facts)}", flush=True)
        cases = []
        for layer_name in args.layers.split(","):
            for pace, messages, interval in paces:
                started = time.monotonic()
                flush_redis(redis_server.address)
                case = run_case(layer_name, pace, redis_server.address, args.members, messages, interval)
                case["run_seconds"] = time.monotonic() - started
                print(f"  {layer_name:13} {pace:12} {case.get('received', '-')}/{args.members * messages} delivered"
                      f" in {case['run_seconds']:.1f}s", flush=True)
                cases.append(case)
    finally:
        redis_server.stop()
    print()
    print(markdown_table(cases))
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "args": {k: str(v) for k, v in vars(args).items()},
                                         "cases": cases}, indent=2))


if __name__ == "__main__":
    main()
