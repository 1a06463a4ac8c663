"""Scenario 1, ingest: 32 clients POSTing messages as fast as answers come, against the bare endpoint.

Each client is one keep-alive connection, one user and one chat of its own (so the figure is the cost of a
write, not of 32 writers queuing for one chat's row lock), sending its next POST when the last one is
answered. The baseline is the same load on `POST /bench/bare/` in the same daphne process: DRF validating
`{text}` and writing one row, token-authenticated and throttle-checked the same way. The relay and the
forwarder keep running, as in production: relaying what the real endpoint writes is part of its cost.
Requests are counted when they complete inside the measured window, after a warm-up; the endpoints take
turns (with the chats of 1,000 members below), two rounds each. Then one client alone on each endpoint: the
latency of a POST with nothing queued in front of it, the floor under every end-to-end latency (scenario 3
starts its clock at the POST).

Membership (issue 11: "a post into a chat with 1,000 members costs the same as today"): 32 more clients POST
into 32 chats of 1,000 members each, one chat each, as its owner (a member already: a steady-state post, not
a join), in the same rounds, taking turns with the bare endpoint and the 1-member chats (the two services swap places
in the second round, so a database growing over the run weighs on both alike); then one client alone in a
1,000-member chat. The members are bulk-inserted (bench.seed.add_members). Both posts look up the author's
membership and move its read position in the post's transaction; the scenario also counts the database
queries of one post of each kind (CaptureQueriesContext around the mediator call, in this process).
No database query per live frame: the consumers (chats/live/consumers.py) read membership once when a chat
stream connects (`chat_access`) and otherwise only in each web process's position check (chats/live/positions.py,
one query per CHAT_WS_POSITION_CHECK_SECONDS for all its private-chat subscribers), and an in-order live frame
is sent without touching the database (a frame revealing a gap reads the missing messages, not membership).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.httpclient import Connection, Response
from bench.seed import add_members, create_chat, tokens_for, users_for
from bench.stack import Stack, cpu_usage
from bench.stats import latency_summary
from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.models import Chat
from messaging_domain.commands import CreateMessageCommand

CLIENTS = 32
ROUNDS = 2  # bare, service, 1,000 members, bare, 1,000 members, service: drift over the run (a growing database) hits both alike
WARMUP_SECONDS = 1.5
SECONDS = 5.0  # measured per round
MEMBERS = 1000  # per chat of the membership comparison, the owner included (issue 11)


async def closed_loop(stack: Stack, targets: list[tuple[str, str]]) -> list[Response]:
    """One client per (token, path), each POSTing back to back; the responses completed in the window."""
    start = time.monotonic()
    window = (start + WARMUP_SECONDS, start + WARMUP_SECONDS + SECONDS)
    measured: list[Response] = []

    async def client(token: str, path: str) -> None:
        connection = Connection("127.0.0.1", stack.port, token)
        try:
            number = 0
            while time.monotonic() < window[1]:
                number += 1
                response = await connection.post(path, {"text": f"ingest message number {number}"})
                if window[0] <= response.sent_at + response.seconds <= window[1]:
                    measured.append(response)
        finally:
            await connection.close()

    await asyncio.gather(*(client(token, path) for token, path in targets))
    return measured


def measure(stack: Stack, targets: list[tuple[str, str]]) -> tuple[list[Response], dict[str, float]]:
    with cpu_usage(stack.pids()) as cpu:
        responses = asyncio.run(closed_loop(stack, targets))
    return responses, cpu


def summary(rounds: list[tuple[list[Response], dict[str, float]]]) -> dict:
    responses = [response for round_responses, _ in rounds for response in round_responses]
    statuses = Counter(response.status for response in responses)
    return {
        "requests_per_s": round(statuses[201] / (SECONDS * len(rounds)), 1),
        "latency_ms": latency_summary(sorted(r.seconds for r in responses if r.status == 201)),
        "statuses": {str(status): count for status, count in statuses.items()},
        "cpu_percent": {name: round(sum(cpu[name] for _, cpu in rounds) / len(rounds), 1) for name in rounds[0][1]},
    }


def per_round(rounds: list[tuple[list[Response], dict[str, float]]]) -> list[float]:
    """Requests/s of each round, in the order measured: the spread between rounds is the run's noise."""
    return [round(sum(response.status == 201 for response in responses) / SECONDS, 1) for responses, _ in rounds]


def queries_of_one_post(chat_id: str, owner_username: str) -> list[str]:
    """The SQL of one post by the chat's owner through the mediator, as the endpoint makes it (in this process)."""
    author = participant_of(get_user_model().objects.get(username=owner_username))
    with CaptureQueriesContext(connection) as queries:
        mediator.handle_command(CreateMessageCommand(chat_id=uuid.UUID(chat_id), text="count my queries", author=author))
    return [query["sql"] for query in queries.captured_queries]


def run(stack: Stack) -> dict:
    tokens = tokens_for("bench-ingest", CLIENTS)
    chats = [create_chat(stack, token, f"ingest {i}") for i, token in enumerate(tokens)]
    # Chats of 1,000 members: their owners post (members already), the other 999 are the same users in each.
    seeding = time.monotonic()
    crowd_tokens = tokens_for("bench-ingest-crowd", CLIENTS)
    crowd_chats = [create_chat(stack, token, f"ingest crowd {i}") for i, token in enumerate(crowd_tokens)]
    add_members(crowd_chats, users_for("bench-ingest-member", MEMBERS - 1))
    seed_seconds = time.monotonic() - seeding
    member_counts = sorted(set(Chat.objects.filter(pk__in=crowd_chats).values_list("member_count", flat=True)))
    bare_targets = [(token, "/bench/bare/") for token in tokens]
    service_targets = [(token, f"/api/chats/{chat}/messages/") for token, chat in zip(tokens, chats)]
    crowd_targets = [(token, f"/api/chats/{chat}/messages/") for token, chat in zip(crowd_tokens, crowd_chats)]
    bare_rounds, service_rounds, crowd_rounds = [], [], []
    for number in range(ROUNDS):
        bare_rounds.append(measure(stack, bare_targets))
        services = [(service_rounds, service_targets), (crowd_rounds, crowd_targets)]
        for rounds, targets in services if number % 2 == 0 else reversed(services):
            rounds.append(measure(stack, targets))
    bare, service, crowd = summary(bare_rounds), summary(service_rounds), summary(crowd_rounds)
    alone = {"bare": summary([measure(stack, bare_targets[:1])]), "service": summary([measure(stack, service_targets[:1])])}
    crowd_alone = summary([measure(stack, crowd_targets[:1])])
    one_member_sql = queries_of_one_post(chats[0], "bench-ingest-0")
    crowd_sql = queries_of_one_post(crowd_chats[0], "bench-ingest-crowd-0")
    return {
        "one_client": alone,
        "clients": CLIENTS,
        "seconds": SECONDS * ROUNDS,
        "rounds": ROUNDS,
        "service": service,
        "bare": bare,
        "ratio": round(service["requests_per_s"] / bare["requests_per_s"], 3) if bare["requests_per_s"] else None,
        "members": {  # issue 11: the same posts into chats of 1,000 members; baseline: "service" (1 member each)
            "members_per_chat": MEMBERS,
            "member_counts": member_counts,
            "chats": len(crowd_chats),
            "seed_seconds": round(seed_seconds, 1),
            "service": crowd,
            "one_client": crowd_alone,
            "ratio": round(crowd["requests_per_s"] / service["requests_per_s"], 3) if service["requests_per_s"] else None,
            "requests_per_s_by_round": {"1_member": per_round(service_rounds), f"{MEMBERS}_members": per_round(crowd_rounds),
                                        "bare": per_round(bare_rounds)},
            "queries_per_post": {"1_member": len(one_member_sql), f"{MEMBERS}_members": len(crowd_sql)},
            "sql_of_one_post": crowd_sql,
        },
    }
