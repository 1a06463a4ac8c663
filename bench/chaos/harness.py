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

from bench.chaos.clients import Change, HttpConnection, Post, Subscriber
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
    change_share: float = 0.4  # posts later edited and/or deleted (see plan_changes)
    seq_share: float = 0.2  # subscribers on the older protocol (after_seq)
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
               max_size_share: float, owner_token: str = "", change_share: float = 0.0) -> list[Post]:
    posts = []
    for number in range(count):
        kind, text = make_text(number, rng, max_size_share)
        post = Post(number, rng.choice(chats), rng.choice(poster_tokens), text, kind, owner_token=owner_token)
        post.changes = plan_changes(number, rng, max_size_share, change_share)
        posts.append(post)
    return posts


def plan_changes(number: int, rng: random.Random, max_size_share: float, share: float) -> list[Change]:
    """What happens to a post after it is in, for `share` of the posts: edited once (45 % of them), twice
    (20 %), edited then deleted (15 %), deleted (12 %, half by the chat's owner), or an edit and a deletion
    sent at the same moment (8 %: a race either may win). The first change comes 0.3-2.5 s after the post,
    the next 0.1-1 s after that: while the faults go on."""
    if rng.random() >= share:
        return []
    pick = rng.random()

    def edit(k: int, delay: float, racing: bool = False) -> Change:
        return Change("edit", make_text(number, rng, max_size_share, edit=k)[1], racing=racing, delay=delay)

    first, then = rng.uniform(0.3, 2.5), rng.uniform(0.1, 1.0)
    if pick < 0.45:
        return [edit(1, first)]
    if pick < 0.65:
        return [edit(1, first), edit(2, then)]
    if pick < 0.80:
        return [edit(1, first), Change("delete", by_owner=rng.random() < 0.5, delay=then)]
    if pick < 0.92:
        return [Change("delete", by_owner=rng.random() < 0.5, delay=first)]
    return [edit(1, first, racing=True), Change("delete", racing=True, delay=first)]


# ---- the database's truth ------------------------------------------------------------------------------

@dataclass
class ChatTruth:
    """A chat as the database holds it at the end: what every subscriber on after_version must end with."""

    messages: dict[int, tuple[str, bool, int]] = field(default_factory=dict)  # seq -> (shown text, deleted, version)
    version: int = 0
    last_seq: int = 0
    members: set[str] = field(default_factory=set)  # everyone but the owner (whose membership is version 0)


def committed(chat_ids: list[str]) -> dict[str, ChatTruth]:
    """Every message (tombstones included), the version and the members the database holds for these chats."""
    from django.db import close_old_connections

    from chats.models import Chat, Membership, Message

    close_old_connections()
    truth: dict[str, ChatTruth] = {chat_id: ChatTruth() for chat_id in chat_ids}
    for chat_id, last_seq, version in Chat.objects.filter(id__in=chat_ids).values_list("id", "last_seq", "version"):
        truth[str(chat_id)].last_seq, truth[str(chat_id)].version = last_seq, version
    rows = Message.objects.filter(chat_id__in=chat_ids).values_list("chat_id", "seq", "text", "deleted", "version")
    for chat_id, seq, text, deleted, version in rows.iterator():
        truth[str(chat_id)].messages[seq] = ("" if deleted else text, deleted, version)
    members = Membership.objects.filter(chat_id__in=chat_ids).exclude(role="owner").values_list("chat_id", "user__username")
    for chat_id, username in members.iterator():
        truth[str(chat_id)].members.add(username)
    return truth


def positions(chat_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Each chat's (last seq, version)."""
    from django.db import close_old_connections

    from chats.models import Chat

    close_old_connections()
    return {str(chat_id): (last, version) for chat_id, last, version
            in Chat.objects.filter(id__in=chat_ids).values_list("id", "last_seq", "version")}


def behind(sub: Subscriber, position: tuple[int, int]) -> int:
    """How far a subscriber is from its chat's position: versions on after_version, seqs on after_seq."""
    last_seq, version = position
    return max(0, version - sub.last_version) if sub.protocol == "version" else sum(
        1 for seq in range(1, last_seq + 1) if seq not in sub.received_at)


async def wait_delivered(subscribers: list[Subscriber], chat_ids: list[str], cap: float) -> tuple[str, float]:
    """Until every subscriber has reached its chat's version (after_seq: has every committed seq), or `cap` s."""
    started = time.monotonic()
    while True:
        now = await asyncio.to_thread(positions, chat_ids)
        missing = sum(1 for sub in subscribers if behind(sub, now.get(sub.chat_id, (0, 0))))
        elapsed = time.monotonic() - started
        if not missing:
            return "complete", round(elapsed, 1)
        if elapsed > cap:
            return f"time cap {cap:g}s ({missing} subscribers behind)", round(elapsed, 1)
        await asyncio.sleep(0.5)


# ---- counting ------------------------------------------------------------------------------------------

def expected_end(post: Post) -> tuple[str, bool]:
    """What a successful post must look like in the database once its changes are done, from the answers the
    clients got: deleted if a deletion was answered, else the text of its last answered edit, else as posted."""
    if any(change.kind == "delete" and change.outcome == "ok" for change in post.changes):
        return "", True
    edits = [change for change in post.changes if change.kind == "edit" and change.outcome == "ok"]
    return (edits[-1].text if edits else post.text), False


def tally(ctx: Context, posts: list[Post], subscribers: list[Subscriber], truth: dict[str, ChatTruth]) -> dict:
    ok = [post for post in posts if post.outcome == "ok"]
    changes = [change for post in posts for change in post.changes]
    # Every text a message may show: as posted, as each edit sent it (answered or not), or the tombstone's "".
    known: dict[tuple[str, int], set[int]] = {}
    for post in ok:
        known[(post.chat_id, post.seq)] = {hash(post.text), hash("")} | {
            hash(change.text) for change in post.changes if change.kind == "edit"}
    lost = stale = text_mismatch = phantom = members_mismatch = 0
    lost_messages: set[tuple[str, int]] = set()
    stale_messages: set[tuple[str, int]] = set()
    for sub in subscribers:
        chat = truth.get(sub.chat_id, ChatTruth())
        for seq, (text, deleted, version) in chat.messages.items():
            held = sub.messages.get(seq)
            if held is None:
                lost += 1
                lost_messages.add((sub.chat_id, seq))
            elif sub.protocol == "version" and held[0] != version:
                stale += 1  # an edit or a deletion that never reached this client
                stale_messages.add((sub.chat_id, seq))
            elif sub.protocol == "version" and (held[1], held[2]) != (hash(text), deleted):
                text_mismatch += 1
        phantom += sum(1 for seq in sub.messages if seq not in chat.messages)
        # A text that is none of the message's: mangled on the way (every frame's text, both protocols).
        text_mismatch += sum(1 for seq, text_hash in sub.texts_seen
                             if text_hash not in known.get((sub.chat_id, seq), {text_hash}))
        if sub.protocol == "version" and sub.members != chat.members:
            members_mismatch += 1
    statuses = Counter(status for post in posts for status in post.statuses)
    change_statuses = Counter(status for change in changes for status in change.statuses)
    post_text_mismatch = sum(1 for post in ok if post.returned_text != post.text)
    # The database's end state of every post, from what the clients were answered: no edit lost on the write side.
    stored_mismatch = sum(1 for post in ok if post.seq not in truth.get(post.chat_id, ChatTruth()).messages
                          or truth[post.chat_id].messages[post.seq][:2] != expected_end(post))
    # Every seq a successful post got is one message: two posts with one seq would be a lost write.
    seq_owners = Counter((post.chat_id, post.seq) for post in ok)
    committed_count = sum(len(chat.messages) for chat in truth.values())
    closes = Counter()
    for sub in subscribers:
        closes.update({str(code): n for code, n in sub.closes.items()})
    by_version = [sub for sub in subscribers if sub.protocol == "version"]
    return {
        "posts_attempted": len(posts),
        "posts_succeeded": len(ok),
        "posts_failed": Counter(post.outcome for post in posts if post.outcome != "ok"),
        "posts_failed_examples": [post.errors[-1] for post in posts if post.outcome != "ok" and post.errors][:5],
        "changes_attempted": sum(1 for change in changes if change.outcome != "not sent"),
        "changes_succeeded": sum(1 for change in changes if change.outcome in ("ok", "lost the race")),
        "changes_by_kind": dict(Counter(f"{change.kind}{' (racing)' if change.racing else ''}" for change in changes
                                        if change.outcome != "not sent")),
        "changes_outcomes": dict(Counter(change.outcome for change in changes)),
        "changes_failed_examples": [change.errors[-1] for change in changes
                                    if change.outcome not in ("ok", "lost the race", "not sent") and change.errors][:5],
        "races_lost_by_the_edit": sum(1 for change in changes if change.outcome == "lost the race"),
        "change_statuses": {str(k): v for k, v in sorted(change_statuses.items())},
        "http_5xx": sum(n for status, n in (statuses + change_statuses).items() if status >= 500),
        "posts_with_5xx": sum(1 for post in posts if any(s >= 500 for s in post.statuses)),
        "changes_with_5xx": sum(1 for change in changes if any(s >= 500 for s in change.statuses)),
        "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "post_retries": sum(max(0, len(post.statuses) + len(post.errors) - 1) for post in posts),
        "change_retries": sum(max(0, len(change.statuses) + len(change.errors) - 1) for change in changes),
        "post_connection_errors": Counter(error.split(":")[0] for post in posts for error in post.errors
                                          if not error.startswith("{")),
        "post_latency_max_s": round(max((post.done_at - post.first_sent_at for post in ok), default=0), 2),
        "post_text_mismatch": post_text_mismatch,
        "stored_mismatch": stored_mismatch,
        "seq_given_twice": sum(n - 1 for n in seq_owners.values() if n > 1),
        "committed_messages": committed_count,
        "committed_deleted": sum(1 for chat in truth.values() for m in chat.messages.values() if m[1]),
        "committed_not_acknowledged": committed_count - len(ok),
        "chat_versions": sum(chat.version for chat in truth.values()),
        "subscribers": len(subscribers),
        "subscribers_by_protocol": dict(Counter(sub.protocol for sub in subscribers)),
        "deliveries_expected": sum(len(truth.get(sub.chat_id, ChatTruth()).messages) for sub in subscribers),
        "lost": lost,
        "lost_messages": len(lost_messages),
        "stale": stale,
        "stale_messages": len(stale_messages),
        "phantom_messages": phantom,
        "members_mismatch": members_mismatch,
        "ws_duplicates": sum(sub.duplicates for sub in subscribers),
        "order_violations": sum(sub.order_violations for sub in subscribers),
        "unknown_changes": sum(sub.unknown_changes for sub in subscribers),
        "version_mismatch": sum(sub.version_mismatch for sub in subscribers),
        "versions_skipped": sum(sub.versions_skipped for sub in by_version),
        "changes_received": dict(sum((sub.changes_received for sub in by_version), Counter())),
        "gaps_after_resume": sum(sub.gaps_after_resume for sub in subscribers),
        "gaps_live": sum(sub.gaps_live for sub in subscribers),
        "gap_examples": [ex for sub in subscribers for ex in sub.gap_examples][:8],
        "text_mismatch": text_mismatch,
        "closes": dict(closes.most_common()),
        "error_frames": dict(sum((sub.error_frames for sub in subscribers), Counter())),
        "other_frames": dict(sum((sub.other_frames for sub in subscribers), Counter())),
        "sockets_opened": sum(sub.sockets_opened for sub in subscribers),
        "subscribers_stopped": Counter(sub.stopped_by for sub in subscribers if sub.stopped_by),
        "subscribers_incomplete": sum(1 for sub in subscribers if any(
            (held := sub.messages.get(seq)) is None or (sub.protocol == "version" and held[0] != message[2])
            for seq, message in truth.get(sub.chat_id, ChatTruth()).messages.items())),
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
