"""Scenario 1, ingest: 32 clients POSTing messages as fast as answers come, against the bare endpoint.

Each client is one keep-alive connection, one user and one chat of its own (so the figure is the cost of a
write, not of 32 writers queuing for one chat's row lock), sending its next POST when the last one is
answered. The baseline is the same load on `POST /bench/bare/` in the same daphne process: DRF validating
`{text}` and writing one row, token-authenticated and throttle-checked the same way. The relay and the
forwarder keep running, as in production: relaying what the real endpoint writes is part of its cost.
Requests are counted when they complete inside the measured window, after a warm-up; the two endpoints
take turns, two rounds each. Then one client alone on each endpoint: the latency of a POST with nothing
queued in front of it, the floor under every end-to-end latency (scenario 3 starts its clock at the POST).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bench.httpclient import Connection, Response
from bench.seed import create_chat, tokens_for
from bench.stack import Stack, cpu_usage
from bench.stats import latency_summary

CLIENTS = 32
ROUNDS = 2  # bare, service, bare, service: drift over the run (a growing database) hits both alike
WARMUP_SECONDS = 1.5
SECONDS = 5.0  # measured per round


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


def run(stack: Stack) -> dict:
    tokens = tokens_for("bench-ingest", CLIENTS)
    chats = [create_chat(stack, token, f"ingest {i}") for i, token in enumerate(tokens)]
    bare_targets = [(token, "/bench/bare/") for token in tokens]
    service_targets = [(token, f"/api/chats/{chat}/messages/") for token, chat in zip(tokens, chats)]
    bare_rounds, service_rounds = [], []
    for _ in range(ROUNDS):
        bare_rounds.append(measure(stack, bare_targets))
        service_rounds.append(measure(stack, service_targets))
    bare, service = summary(bare_rounds), summary(service_rounds)
    alone = {"bare": summary([measure(stack, bare_targets[:1])]), "service": summary([measure(stack, service_targets[:1])])}
    return {
        "one_client": alone,
        "clients": CLIENTS,
        "seconds": SECONDS * ROUNDS,
        "rounds": ROUNDS,
        "service": service,
        "bare": bare,
        "ratio": round(service["requests_per_s"] / bare["requests_per_s"], 3) if bare["requests_per_s"] else None,
    }
