"""Scenario 3, end-to-end latency: POST -> websocket frame at steady rates, 100 subscribers on the chat.

The whole path: HTTP -> database + outbox -> relay -> Kafka -> forwarder -> Redis -> daphne -> 100 clients.
Posts leave on a fixed schedule over a pool of keep-alive connections: 5/s first (the pipeline's floor,
with the machine nearly idle), then 50/s (the target) and 200/s. The rate achieved is reported too: when
every connection waits for an answer, posts leave late. A frame's latency is its receive time minus its
POST's send time, matched by seq, on one clock. Every subscriber must see
every posted seq exactly once: lost and duplicates are counted per subscriber. The baseline is the HTTP
response time of the same POSTs: what the write itself takes, before the event travels.
"""

from __future__ import annotations

import asyncio

from bench.httpclient import Connection, Response, post_paced
from bench.seed import chat_stream_urls, create_chat, token_for, tokens_for
from bench.stack import Stack, cpu_usage
from bench.stats import latency_summary
from bench.wsclient import Audience

SUBSCRIBERS = 100
RATES = ((5, 4.0), (50, 8.0), (200, 4.0))  # (posts per second, seconds)
POSTERS = 64  # keep-alive connections the poster may use at once: many clients, as in a busy chat
FIRST_EVENT_CAP = 60.0  # seconds for the warm-up post to reach everyone (the pipeline may still be busy)
IDLE_CAP, DRAIN_CAP = 5.0, 30.0  # after the last post, stop waiting after IDLE_CAP s without a frame or DRAIN_CAP s in all


async def post_and_receive(stack: Stack, audience: Audience, posters: list[Connection], path: str,
                           rate: float | None, count: int, idle: float, cap: float) -> dict:
    """`count` posts at `rate`, then wait until everyone got them; returns what arrived and how fast."""
    audience.reset()
    payloads = [{"text": f"at {rate}/s, message {i}"} for i in range(count)]
    with cpu_usage(stack.pids()) as cpu:
        posts = await post_paced(posters, path, payloads, rate)
        sent_at = {r.json()["seq"]: r.sent_at for r in posts.responses if r.status == 201}
        ended_by = await audience.wait_for(len(sent_at), idle, cap)
    return {
        "rate": rate,
        "posts_failed": count - len(sent_at),
        "achieved_rate": achieved_rate(posts.responses),
        "behind_schedule_max_ms": posts.behind_schedule_max_ms if rate else None,
        "http_latency_ms": latency_summary(sorted(r.seconds for r in posts.responses if r.status == 201)),
        **audience.deliveries(sent_at),
        "ended_by": ended_by,
        "cpu_percent": cpu,
    }


def achieved_rate(responses: list[Response]) -> float | None:
    """Posts per second as they actually left, first to last."""
    sent = sorted(response.sent_at for response in responses)
    return round((len(sent) - 1) / (sent[-1] - sent[0]), 1) if len(sent) > 1 and sent[-1] > sent[0] else None


async def scenario(stack: Stack, chat_id: str, writer: str, readers: list[str]) -> list[dict]:
    audience = await Audience.connect(chat_stream_urls(stack, chat_id, readers))
    posters = [Connection("127.0.0.1", stack.port, writer) for _ in range(POSTERS)]
    path = f"/api/chats/{chat_id}/messages/"
    try:
        warmup = await post_and_receive(stack, audience, posters[:1], path, None, 1, FIRST_EVENT_CAP, FIRST_EVENT_CAP)
        if warmup["lost"]:
            raise RuntimeError(f"the warm-up message did not reach every subscriber: {warmup}")
        return [
            {**await post_and_receive(stack, audience, posters, path, rate, round(rate * seconds), IDLE_CAP, DRAIN_CAP),
             "seconds": seconds}
            for rate, seconds in RATES
        ]
    finally:
        await asyncio.gather(*(poster.close() for poster in posters))
        await audience.close()


def run(stack: Stack) -> dict:
    writer, readers = token_for("bench-latency-writer"), tokens_for("bench-latency-reader", SUBSCRIBERS)
    chat_id = create_chat(stack, writer, "latency")
    return {"runs": asyncio.run(scenario(stack, chat_id, writer, readers))}
