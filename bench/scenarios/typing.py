"""Scenario 6 (issue 12), a typing burst: message delivery in a chat while 100 users type in it.

Issue 12: "a typing burst of 100 users in one chat must not slow message delivery in that chat by more than
10 %". One chat with 100 subscribers, each a user of its own, in scenario 3's client processes
(bench/scenarios/latency_clients.py); one poster at 5 msg/s; POST -> frame measured as in scenario 3 (receive
time minus the POST's send time, matched by seq). Without typing, and with every one of the 100 subscribers
sending `{"type": "typing"}` every ~1 s (±10 %, from a random moment), which the web process gates (one per
user per chat per 2 s, two per chat per second per web process: CHAT_WS_TYPING_*) and sends to the other 99
sockets over the channel layer.

The two conditions take turns in rounds, the order swapping each round, so that a machine getting busier or
quieter during the run weighs on both; a burst starts TYPING_LEAD s before its posts (every typist has begun)
and stops after its phase, followed by a pause so that its last typing frames are not in the next phase. The
latencies of every round of a condition are pooled; the figure is p50 and p99 with the burst over p50 and p99
without, held to <= 1.10 each. Typing frames sent and received are counted (the gate's effect), and every
subscriber must get every message once in both conditions.
"""

from __future__ import annotations

import time

from bench.scenarios.latency import (
    DRAIN_CAP,
    FIRST_EVENT_CAP,
    IDLE_CAP,
    POSTERS,
    SUBSCRIBER_PROCESSES,
    run_phase,
)
from bench.scenarios.latency_clients import ClientProcess
from bench.seed import chat_stream_urls, create_chat, token_for, tokens_for
from bench.stack import Stack
from bench.stats import latency_summary

SUBSCRIBERS = 100
RATE = 5.0  # posts per second
SECONDS = 20.0  # per phase: 100 posts, 10,000 frames (with 40, a round's p99 was one slow post)
ROUNDS = 4  # each: one phase without typing and one with, in alternating order
TYPING_EVERY = 1.0  # seconds between one typist's typing frames
TYPING_LEAD = 2.0  # seconds of typing before a phase's first post
SETTLE = 1.0  # seconds after a burst stops, before the next phase


def pooled(phases: list[dict]) -> dict:
    latencies = sorted(latency for phase in phases for latency in phase.pop("latencies_s"))
    return {
        "phases": len(phases),
        "frames_expected": sum(phase["frames_expected"] for phase in phases),
        "frames_received": sum(phase["frames_received"] for phase in phases),
        "lost": sum(phase["lost"] for phase in phases),
        "duplicates": sum(phase["duplicates"] for phase in phases),
        "posts_failed": sum(phase["posts_failed"] for phase in phases),
        "latency_ms": latency_summary(latencies),
        "latency_p50_ms_per_round": [phase["latency_ms"]["p50"] for phase in phases],
        "latency_p99_ms_per_round": [phase["latency_ms"]["p99"] for phase in phases],
        "commit_to_frame_ms_p50_per_round": [phase["commit_to_frame_ms"]["p50"] for phase in phases],
        "http_latency_ms_p50_per_round": [phase["http_latency_ms"]["p50"] for phase in phases],
        "typing_frames_sent_per_s": round(sum(phase["typing_frames_sent"] for phase in phases)
                                          / sum(phase["typed_for_s"] for phase in phases), 1)
        if any(phase["typed_for_s"] for phase in phases) else 0.0,
        "typing_frames_received_per_s": round(sum(phase["typing_frames_received"] for phase in phases)
                                              / sum(phase["typed_for_s"] for phase in phases), 1)
        if any(phase["typed_for_s"] for phase in phases) else 0.0,
        "cpu_percent": average_cpu([phase["cpu_percent"] for phase in phases]),
        "clients_cpu_percent": average_cpu([phase["clients"]["cpu_percent"] for phase in phases]),
        "clients_loop_lag_p99_ms": max(phase["clients"]["loop_lag_ms"]["subscribers_p99"] for phase in phases),
    }


def average_cpu(samples: list[dict]) -> dict:
    names = {name for sample in samples for name in sample}
    return {name: round(sum(sample.get(name, 0.0) for sample in samples) / len(samples), 1) for name in sorted(names)}


def ratio(with_burst: float | None, without: float | None) -> float | None:
    return round(with_burst / without, 3) if with_burst and without else None


def run(stack: Stack) -> dict:
    writer, readers = token_for("bench-typing-writer"), tokens_for("bench-typing-reader", SUBSCRIBERS)
    chat_id = create_chat(stack, writer, "typing")
    urls = chat_stream_urls(stack, chat_id, readers)
    path = f"/api/chats/{chat_id}/messages/"
    subscribers: list[ClientProcess] = []
    poster = None
    phases: dict[bool, list[dict]] = {False: [], True: []}
    try:
        for n in range(SUBSCRIBER_PROCESSES):
            subscribers.append(ClientProcess("subscribe", {"urls": urls[n::SUBSCRIBER_PROCESSES]}))
        poster = ClientProcess("post", {"host": "127.0.0.1", "port": stack.port, "token": writer, "connections": POSTERS})
        warmup = run_phase(stack, subscribers, poster, path, None, 1, FIRST_EVENT_CAP, FIRST_EVENT_CAP, 1)
        if warmup["lost"]:
            raise RuntimeError(f"the warm-up message did not reach every subscriber: {warmup}")
        for round_number in range(ROUNDS):
            for typing in ((False, True) if round_number % 2 == 0 else (True, False)):
                typing_started = None
                if typing:
                    for process in subscribers:
                        process.call({"cmd": "typing", "every": TYPING_EVERY})
                    time.sleep(TYPING_LEAD)
                typing_started = time.monotonic()  # the phase's counts start here (run_phase resets them)
                phase = run_phase(stack, subscribers, poster, path, RATE, round(RATE * SECONDS), IDLE_CAP, DRAIN_CAP,
                                  samples=True)
                phase["typed_for_s"] = time.monotonic() - typing_started if typing else 0.0
                if typing:
                    for process in subscribers:
                        process.call({"cmd": "typing", "every": None})
                    time.sleep(SETTLE)
                phase["round"], phase["typing"] = round_number, typing
                phases[typing].append(phase)
    finally:
        for process in [*subscribers, *([poster] if poster else [])]:
            process.close()
    without, with_burst = pooled(phases[False]), pooled(phases[True])
    return {
        "subscribers": SUBSCRIBERS, "rate": RATE, "seconds": SECONDS, "rounds": ROUNDS,
        "typing_every_s": TYPING_EVERY, "web_processes": stack.web_processes,
        "without": without, "with": with_burst,
        "ratio": {q: ratio(with_burst["latency_ms"][q], without["latency_ms"][q]) for q in ("p50", "p95", "p99")},
        "phases": [{key: value for key, value in phase.items() if key != "latencies_s"}
                   for phase in sorted(phases[False] + phases[True], key=lambda p: (p["round"], p["typing"]))],
    }
