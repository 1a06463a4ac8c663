"""What every scenario shares: users and chats, subscribers and posters, faults on named processes, the
watchdog, waiting for delivery, and counting what arrived against what the database committed."""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.chaos.clients import HttpConnection, Post, Subscriber
from bench.chaos.texts import make_text
from bench.stack import Stack

BATCH_SIZE = 500  # relay_outbox's default --batch-size: what one relay kill may send twice
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ ")
EVIDENCE = re.compile(r"ERROR|CRITICAL|Traceback|Exception|WARNING|exited|Killed", re.IGNORECASE)


@dataclass
class Fault:
    what: str
    started: float  # monotonic
    ended: float | None = None  # when the fault stopped being injected (restart issued, SIGCONT sent)
    note: str = ""


@dataclass
class Scenario:
    """One scenario's knobs; `fault` is an async function (ctx, load_seconds) that injects the faults."""

    name: str
    title: str
    chats: int
    subscribers: int
    sockets_per_user: int
    posts: int
    rate: float
    converge_cap: float  # seconds, after the last post, to wait for every subscriber to have every message
    fault: Any
    max_size_share: float = 0.12
    subscribed_chats: int | None = None  # chats with subscribers (default: min(chats, subscribers))
    storm_mean_s: float | None = None  # reconnect storm: mean seconds a socket stays open
    kafka_dup_per_relay_retry: bool = False  # the broker stop: each failed batch may be sent again
    recovery_measured: bool = True
    options: dict = field(default_factory=dict)


class Context:
    """One scenario's run: the stack, what it created, the faults it injected and what the watchdog saw."""

    def __init__(self, stack: Stack, scenario: Scenario, run_id: str, rng: random.Random) -> None:
        self.stack, self.scenario, self.run_id, self.rng = stack, scenario, run_id, rng
        self.faults: list[Fault] = []
        self.expected_down: set[str] = set()
        self.unexpected_exits: list[dict] = []
        self.relay_kills = 0
        self.notes: list[str] = []
        self.log_marks = {name: _size(p.log) for name, p in stack.processes.items()}
        self.started = time.monotonic()

    # -- processes ---------------------------------------------------------------------------------------

    async def kill(self, name: str) -> Fault:
        """SIGKILL the named process (web.1, relay, forwarder...); the fault lasts until `restart`."""
        self.expected_down.add(name)
        process = self.stack.processes[name]
        fault = Fault(f"SIGKILL {name} (pid {process.popen.pid})", time.monotonic())
        await asyncio.to_thread(process.kill)
        if name.startswith("relay"):
            self.relay_kills += 1
        self.faults.append(fault)
        return fault

    async def restart(self, name: str, fault: Fault | None, wait: bool = True) -> None:
        """Start the process again; the fault ends when it is started (recovery counts its start-up)."""
        if fault is not None:
            fault.ended = time.monotonic()
        process = await asyncio.to_thread(self.stack.spawn, name, None, False)
        self.expected_down.discard(name)
        if wait:
            try:
                await asyncio.to_thread(self.stack.wait_ready, process)
            except RuntimeError as error:
                self.notes.append(f"{name} did not become ready after a restart: {str(error)[:300]}")

    def embedded(self, name: str):
        return self.stack.embedded_server(name)

    async def watchdog(self) -> None:
        """Records any service process that exits without the scenario killing it (it is not restarted:
        the scenario shows what that costs)."""
        seen: set[int] = set()
        while True:
            for name, process in list(self.stack.processes.items()):
                if name in self.expected_down or process.alive() or process.popen.pid in seen:
                    continue
                seen.add(process.popen.pid)
                tail = [line for line in process.output().splitlines() if line.strip()][-6:]
                self.unexpected_exits.append({
                    "process": name, "pid": process.popen.pid, "returncode": process.popen.returncode,
                    "at_s": round(time.monotonic() - self.started, 1), "last_lines": tail,
                })
            await asyncio.sleep(0.5)

    def web_sockets(self) -> dict[str, int]:
        """Established connections each web process holds on the service port (the subscribers on it)."""
        counts = {}
        for name, process in self.stack.processes.items():
            if name.startswith("web.") and process.alive():
                try:
                    conns = psutil.Process(process.popen.pid).net_connections(kind="tcp")
                except psutil.Error:
                    continue
                counts[name] = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED
                                   and c.laddr and c.laddr.port == self.stack.port)
        return counts

    def evidence(self) -> dict[str, dict]:
        """Warning and error lines the service's processes logged during the scenario, by log, with counts."""
        found = {}
        for name, process in self.stack.processes.items():
            with open(process.log, "rb") as log:
                log.seek(self.log_marks.get(name, 0))
                text = log.read().decode(errors="replace")
            lines = Counter()
            for line in text.splitlines():
                # Log records (they start with a timestamp) and the last line of a traceback (no indent).
                if not EVIDENCE.search(line) or line.startswith((" ", "Traceback")) or (
                        not TIMESTAMP.match(line) and not re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)):
                    continue
                # Drop the timestamp and numbers that differ line by line, so repeats count as one.
                key = TIMESTAMP.sub("", line)
                key = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "<uuid>", key)
                key = re.sub(r"\d+(\.\d+)?", "N", key)[:300]
                lines[key] += 1
            if lines:
                found[name] = dict(lines.most_common(12))
        return found

    def relay_retries(self) -> int:
        """Batches the relays logged as failed on Kafka during the scenario (each may be sent again)."""
        count = 0
        for name, process in self.stack.processes.items():
            if name.startswith("relay"):
                with open(process.log, "rb") as log:
                    log.seek(self.log_marks.get(name, 0))
                    count += sum(1 for line in log.read().decode(errors="replace").splitlines()
                                 if "unavailable" in line and "Kafka" in line)
        return count


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ---- setting up ----------------------------------------------------------------------------------------

def tokens(prefix: str, count: int) -> list[str]:
    from bench.seed import tokens_for

    return tokens_for(prefix, count)


async def create_chats(stack: Stack, token: str, label: str, count: int) -> list[str]:
    connections = [HttpConnection("127.0.0.1", stack.port) for _ in range(4)]
    ids: list[str | None] = [None] * count

    async def worker(n: int) -> None:
        for i in range(n, count, len(connections)):
            for _ in range(20):
                try:
                    status, body = await connections[n].request("POST", "/api/chats/", token, {"title": f"{label} {i}"})
                except Exception:  # noqa: BLE001 - set-up retries whatever happens
                    await asyncio.sleep(0.5)
                    continue
                if status == 201:
                    import json

                    ids[i] = json.loads(body)["id"]
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"could not create chat {label} {i}")

    try:
        await asyncio.gather(*(worker(n) for n in range(len(connections))))
    finally:
        for connection in connections:
            connection.close()
    return [chat_id for chat_id in ids if chat_id]


def plan_posts(chats: list[str], poster_tokens: list[str], count: int, rng: random.Random,
               max_size_share: float) -> list[Post]:
    posts = []
    for number in range(count):
        kind, text = make_text(number, rng, max_size_share)
        posts.append(Post(number, rng.choice(chats), rng.choice(poster_tokens), text, kind))
    return posts


# ---- the database's truth ------------------------------------------------------------------------------

def committed(chat_ids: list[str]) -> dict[str, dict[int, str]]:
    """Every message the database holds for these chats: chat id -> seq -> text."""
    from django.db import close_old_connections

    from chats.models import Message

    close_old_connections()
    truth: dict[str, dict[int, str]] = {chat_id: {} for chat_id in chat_ids}
    for chat_id, seq, text in Message.objects.filter(chat_id__in=chat_ids).values_list("chat_id", "seq", "text").iterator():
        truth[str(chat_id)][seq] = text
    return truth


def last_seqs(chat_ids: list[str]) -> dict[str, int]:
    from django.db import close_old_connections

    from chats.models import Chat

    close_old_connections()
    return {str(chat_id): last for chat_id, last in Chat.objects.filter(id__in=chat_ids).values_list("id", "last_seq")}


async def wait_delivered(subscribers: list[Subscriber], chat_ids: list[str], cap: float) -> tuple[str, float]:
    """Until every subscriber has every committed seq of its chat, or `cap` seconds."""
    started = time.monotonic()
    while True:
        last = await asyncio.to_thread(last_seqs, chat_ids)
        missing = sum(1 for sub in subscribers for seq in range(1, last.get(sub.chat_id, 0) + 1)
                      if seq not in sub.received_at)
        elapsed = time.monotonic() - started
        if not missing:
            return "complete", round(elapsed, 1)
        if elapsed > cap:
            return f"time cap {cap:g}s ({missing} deliveries missing)", round(elapsed, 1)
        await asyncio.sleep(0.5)


# ---- counting ------------------------------------------------------------------------------------------

def tally(ctx: Context, posts: list[Post], subscribers: list[Subscriber], truth: dict[str, dict[int, str]]) -> dict:
    hashes = {chat_id: {seq: hash(text) for seq, text in seqs.items()} for chat_id, seqs in truth.items()}
    lost = 0
    lost_messages: set[tuple[str, int]] = set()
    text_mismatch = 0
    for sub in subscribers:
        expected = hashes.get(sub.chat_id, {})
        for seq, text_hash in expected.items():
            if seq not in sub.received_at:
                lost += 1
                lost_messages.add((sub.chat_id, seq))
            elif sub.text_hashes[seq] != text_hash:
                text_mismatch += 1
    statuses = Counter(status for post in posts for status in post.statuses)
    ok = [post for post in posts if post.outcome == "ok"]
    post_text_mismatch = sum(1 for post in ok if post.returned_text != post.text
                             or truth.get(post.chat_id, {}).get(post.seq) != post.text)
    # Every seq a successful post got is one message: two posts with one seq would be a lost write.
    seq_owners = Counter((post.chat_id, post.seq) for post in ok)
    committed_count = sum(len(seqs) for seqs in truth.values())
    closes = Counter()
    for sub in subscribers:
        closes.update({str(code): n for code, n in sub.closes.items()})
    return {
        "posts_attempted": len(posts),
        "posts_succeeded": len(ok),
        "posts_failed": Counter(post.outcome for post in posts if post.outcome != "ok"),
        "posts_failed_examples": [post.errors[-1] for post in posts if post.outcome != "ok" and post.errors][:5],
        "http_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "posts_with_5xx": sum(1 for post in posts if any(s >= 500 for s in post.statuses)),
        "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "post_retries": sum(max(0, len(post.statuses) + len(post.errors) - 1) for post in posts),
        "post_connection_errors": Counter(error.split(":")[0] for post in posts for error in post.errors
                                          if not error.startswith("{")),
        "post_latency_max_s": round(max((post.done_at - post.first_sent_at for post in ok), default=0), 2),
        "post_text_mismatch": post_text_mismatch,
        "seq_given_twice": sum(n - 1 for n in seq_owners.values() if n > 1),
        "committed_messages": committed_count,
        "committed_not_acknowledged": committed_count - len(ok),
        "subscribers": len(subscribers),
        "deliveries_expected": sum(len(hashes.get(sub.chat_id, {})) for sub in subscribers),
        "lost": lost,
        "lost_messages": len(lost_messages),
        "ws_duplicates": sum(sub.duplicates for sub in subscribers),
        "order_violations": sum(sub.order_violations for sub in subscribers),
        "gaps_after_resume": sum(sub.gaps_after_resume for sub in subscribers),
        "gaps_live": sum(sub.gaps_live for sub in subscribers),
        "gap_examples": [ex for sub in subscribers for ex in sub.gap_examples][:8],
        "text_mismatch": text_mismatch,
        "closes": dict(closes.most_common()),
        "error_frames": dict(sum((sub.error_frames for sub in subscribers), Counter())),
        "other_frames": dict(sum((sub.other_frames for sub in subscribers), Counter())),
        "sockets_opened": sum(sub.sockets_opened for sub in subscribers),
        "subscribers_stopped": Counter(sub.stopped_by for sub in subscribers if sub.stopped_by),
        "subscribers_incomplete": sum(1 for sub in subscribers
                                      if any(seq not in sub.received_at for seq in hashes.get(sub.chat_id, {}))),
        "client_closes": sum(sub.client_closes for sub in subscribers),
    }


def recovery(faults: list[Fault], posts: list[Post], subscribers: list[Subscriber]) -> list[dict]:
    """For each fault: seconds from its end to the moment the first post sent after it had reached every
    subscriber of its chat (None: it never did)."""
    by_chat: dict[str, list[Subscriber]] = {}
    for sub in subscribers:
        by_chat.setdefault(sub.chat_id, []).append(sub)
    ok = sorted((post for post in posts if post.outcome == "ok" and post.chat_id in by_chat),
                key=lambda post: post.first_sent_at)
    results = []
    for fault in faults:
        entry = {"fault": fault.what, "note": fault.note, "ended_at_s": None, "recovery_s": None}
        if fault.ended is None:
            results.append(entry)
            continue
        first = next((post for post in ok if post.first_sent_at >= fault.ended), None)
        if first is not None:
            times = [sub.received_at.get(first.seq) for sub in by_chat[first.chat_id]]
            if all(t is not None for t in times):
                entry["recovery_s"] = round(max(times) - fault.ended, 2)
            entry["post"] = {"chat_id": first.chat_id, "seq": first.seq}
        else:  # the harness's timing, not the service: said so, and not judged
            entry["note"] = (entry["note"] + "; no post was sent after it: recovery not measured").strip("; ")
            entry["unmeasured"] = True
        results.append(entry)
    return results


def drain(at: float, posts: list[Post], subscribers: list[Subscriber]) -> float | None:
    """Seconds from `at` until every post acknowledged before it had reached every subscriber of its chat."""
    by_chat: dict[str, list[Subscriber]] = {}
    for sub in subscribers:
        by_chat.setdefault(sub.chat_id, []).append(sub)
    latest = at
    for post in posts:
        if post.outcome == "ok" and post.done_at < at and post.chat_id in by_chat:
            for sub in by_chat[post.chat_id]:
                received = sub.received_at.get(post.seq)
                if received is None:
                    return None
                latest = max(latest, received)
    return round(latest - at, 2)


def users_for(count: int, per_user: int) -> int:
    return max(1, math.ceil(count / per_user))


def new_run_id() -> str:
    return uuid.uuid4().hex[:6]


def sigstop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def sigcont(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
