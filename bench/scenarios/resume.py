"""Scenario 7 (issue 13, target 7), resume: one reconnecting client replays a chat of 10,000 messages.

Issue 13: "Resume: replaying 10,000 messages to one reconnecting client within 2x of reading them from the
database and writing them to a raw socket." One public chat of MESSAGES messages; one reader (a user of its own,
not a member) opens `ws/chats/{id}/?after_version=0` and reads until the MESSAGES-th `message.created` frame.
Three measurements, side by side on the same stack and database:

  a) the baseline, in this process: what the consumer's replay does without Channels, daphne and websockets.
     `chats.queries.changes_after` in pages of REPLAY_PAGE, each change made a frame by `change_frame` and
     `render` (exactly the consumer's `send_changes_from_database`), each frame written on its own with
     `sendall` (plus a newline, to count them) to a loopback TCP socket whose other end a thread reads and
     discards; timed from connecting to the reader's last byte. Also, for the record (no target): the same with
     one `sendall` per page (its frames joined by newlines), the raw counterpart of c: ~10,000 writes of
     ~450 bytes cost ~0.3-0.4 s on this machine, which a batching socket does not pay.
  b) the service, one websocket message per frame: from opening the socket (handshake, auth, presence
     included: a reconnect pays them) to the MESSAGES-th `message.created`.
  c) the same with `&batch=1`: the frames of a replay's page come as `{"type": "batch", "frames": [...]}`
     messages of at most CHAT_WS_BATCH_BYTES, which the client unwraps.

Each is measured ROUNDS times, a, b, c (and the paged a) taking turns (a machine getting busier or quieter
weighs on all), after one warm-up round that is listed but not counted; the figure is the median. The target
is the median of b (and of c) over the median of a, <= 2. The client is this process's asyncio loop parsing
every frame with `json.loads`: its CPU is reported, and near 100 % of a core it, not the service, is what is
measured.

Seeding: the messages are bulk-inserted with the ORM, rows exactly as `create_message` writes them (seq and
version one more each, created_version = version, the author a member whose read position moves with their
posts, the chat's last_seq and version at the last one), without their outbox rows: nothing here listens live,
and relaying 10,000 events would load the stack during the measurement. Posting through the mediator runs at
~150 posts/s on this machine: 10,000 would take over a minute of the bench's time for the same rows.

Alone, for development (from the project root; ~1 minute):

    .venv/bin/python -m bench.scenarios.resume
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from datetime import timedelta

from bench.stack import Stack, cpu_usage
from bench.wsclient import close_sockets, open_sockets

MESSAGES = 10_000
REPLAY_PAGE = 500  # chats.live.consumers.REPLAY_PAGE: the consumer's page, which the baseline reads by
ROUNDS = 3  # counted rounds of a, b, c; the figure is the median
TARGET = 2.0  # the service within 2x of the baseline
REPLAY_CAP = 120.0  # seconds for one replay before it counts as failed
SEED_BATCH = 1000  # rows per INSERT


def text_of(seq: int) -> str:
    return f"message {seq} of the resume scenario, about as long as a line people type"


def seed(stack: Stack) -> tuple[str, str]:
    """A chat created through the API by its owner, then MESSAGES messages of the owner in it (see the module's
    docstring); returns the chat's id and the reader's token."""
    # Imported here, not above: this module also runs alone, and then loads before Django is set up.
    from django.db import transaction
    from django.db.models import F

    from bench.seed import create_chat, token_for
    from chats.models import Chat, Membership, Message

    owner_token, reader_token = token_for("bench-resume-owner"), token_for("bench-resume-reader")
    chat_id = create_chat(stack, owner_token, f"resume {uuid.uuid4().hex[:8]}")
    with transaction.atomic():
        chat = Chat.objects.select_for_update().get(pk=chat_id)
        first = chat.created_at
        Message.objects.bulk_create(
            [Message(id=uuid.uuid4(), chat_id=chat.pk, seq=chat.last_seq + n, text=text_of(chat.last_seq + n),
                     author_id=chat.owner_id, created_at=first + timedelta(milliseconds=n),
                     version=chat.version + n, created_version=chat.version + n)
             for n in range(1, MESSAGES + 1)],
            batch_size=SEED_BATCH,
        )
        Chat.objects.filter(pk=chat.pk).update(last_seq=F("last_seq") + MESSAGES, version=F("version") + MESSAGES)
        Membership.objects.filter(chat_id=chat.pk, user_id=chat.owner_id).update(last_read_seq=chat.last_seq + MESSAGES)
    return chat_id, reader_token


class Discard(threading.Thread):
    """A loopback listener's one connection, read to its end and thrown away; notes when its last byte came."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.received = self.newlines = 0
        self.last_byte_at = 0.0

    def run(self) -> None:
        connection, _ = self.listener.accept()
        with connection, self.listener:
            while data := connection.recv(1 << 20):
                self.last_byte_at = time.perf_counter()
                self.received += len(data)
                self.newlines += data.count(b"\n")


def baseline(chat_id: str, paged: bool = False) -> dict:
    """a) The database read and the raw socket write of a replay, in this process (see the module's docstring):
    a write per frame, or with `paged` one per page."""
    from chats.pipeline.wire import change_frame, render
    from chats.queries import changes_after

    reader = Discard()
    reader.start()
    chat = uuid.UUID(chat_id)
    frames = messages = 0
    started = time.perf_counter()
    with socket.create_connection(reader.address) as writer:
        version, seen_up_to, created_here = 0, 0, set()  # after_version=0, as the client asks
        while True:
            page = changes_after(chat, version, REPLAY_PAGE)
            texts = []
            for change in page:
                frame = change_frame(change, chat_id, seen_up_to, created_here)
                text = render(frame) + "\n"
                if paged:
                    texts.append(text)
                else:
                    writer.sendall(text.encode())
                version = change.version
                frames += 1
                messages += frame["type"] == "message.created"
            if texts:
                writer.sendall("".join(texts).encode())
            if len(page) < REPLAY_PAGE:
                break
        writer.shutdown(socket.SHUT_WR)
        reader.join(REPLAY_CAP)
    if reader.is_alive() or reader.newlines != frames or messages != MESSAGES:
        raise RuntimeError(f"baseline: wrote {frames} frames ({messages} messages), the reader counted {reader.newlines}")
    seconds = reader.last_byte_at - started
    return {"seconds": round(seconds, 3), "messages_per_s": round(MESSAGES / seconds), "frames": frames,
            "bytes": reader.received}


async def replay(url: str) -> dict:
    """b) and c): open the socket, read (unwrapping batches) to the MESSAGES-th message.created, in seq order."""
    started = time.perf_counter()
    ws = (await open_sockets([url]))[0]
    opened = time.perf_counter()
    marks: dict[str, float] = {}
    received = batches = frames = messages = payload = 0
    try:
        async with asyncio.timeout(REPLAY_CAP):
            async for raw in ws:
                received += 1
                payload += len(raw)
                message = json.loads(raw)
                if message["type"] == "batch":
                    batches += 1
                    inside = message["frames"]
                else:
                    inside = [message]
                for frame in inside:
                    frames += 1
                    if frame["type"] != "message.created":
                        continue
                    messages += 1
                    if frame["message"]["seq"] != messages:
                        raise RuntimeError(f"seq {frame['message']['seq']} came as message number {messages}")
                    if messages == 1:
                        marks["first_message"] = time.perf_counter()
                if messages >= MESSAGES:
                    break
    finally:
        done = time.perf_counter()
        await close_sockets([ws])
    if messages < MESSAGES:
        raise RuntimeError(f"the socket ended after {messages} of {MESSAGES} messages (close code {ws.close_code})")
    seconds = done - started
    return {
        "seconds": round(seconds, 3), "messages_per_s": round(MESSAGES / seconds),
        "handshake_s": round(opened - started, 3),
        "first_message_s": round(marks["first_message"] - started, 3),  # the first page read and sent
        "websocket_messages": received, "batches": batches, "frames": frames, "payload_chars": payload,
    }


def service(stack: Stack, chat_id: str, token: str, batch: bool) -> dict:
    url = f"ws://127.0.0.1:{stack.port}/ws/chats/{chat_id}/?token={token}&after_version=0" + ("&batch=1" if batch else "")
    with cpu_usage(stack.pids()) as cpu:
        result = asyncio.run(replay(url))
    return {**result, "cpu_percent": cpu}


def median_run(runs: list[dict]) -> dict:
    """The run whose time is the median (ROUNDS is odd), with its CPU: the figure and what was busy during it."""
    return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]


def ratio(measured: dict, base: dict) -> float:
    return round(measured["seconds"] / base["seconds"], 2)


def run(stack: Stack) -> dict:
    seed_started = time.perf_counter()
    chat_id, token = seed(stack)
    seed_seconds = time.perf_counter() - seed_started

    def measure(kind: str) -> dict:
        if kind.startswith("baseline"):
            with cpu_usage(stack.pids()) as cpu:
                result = baseline(chat_id, paged=kind == "baseline_paged")
            return {**result, "cpu_percent": cpu}
        return service(stack, chat_id, token, batch=kind == "batch")

    kinds = ("baseline", "frames", "batch", "baseline_paged")
    warmup = {kind: measure(kind) for kind in kinds}
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(ROUNDS):
        for kind in kinds:
            runs[kind].append(measure(kind))
    figures = {kind: median_run(runs[kind]) for kind in kinds}
    base = figures["baseline"]
    result = {
        "messages": MESSAGES, "replay_page": REPLAY_PAGE, "rounds": ROUNDS, "web_processes": stack.web_processes,
        "seed_seconds": round(seed_seconds, 1), "target": TARGET,
        **figures,
        "ratio": {"frames": ratio(figures["frames"], base), "batch": ratio(figures["batch"], base),
                  "batch_to_paged": ratio(figures["batch"], figures["baseline_paged"])},
        "runs": runs, "warmup": warmup,
    }
    result["met"] = {kind: result["ratio"][kind] <= TARGET for kind in ("frames", "batch")}
    # The client (this process) near a full core measures itself, not the service.
    result["client_saturated"] = {kind: figures[kind]["cpu_percent"]["bench"] >= 90 for kind in ("frames", "batch")}
    return result


def main() -> None:
    import os
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through Stack's cleanup
    with Stack.create() as stack:
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        stack.start_service()
        result = run(stack)
    from bench import report

    print(json.dumps(result, indent=2))
    print()
    print("\n".join(f"| {r.scenario} | {r.figure} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | {r.verdict} |"
                    for r in report.resume_rows(result)))


if __name__ == "__main__":
    main()
