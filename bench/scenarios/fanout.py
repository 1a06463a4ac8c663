"""Scenario 4, fan-out: 1,000 websocket subscribers of one chat, a burst of messages, against raw group_send.

The service side: N sockets on one chat, then 20 messages POSTed back to back; every subscriber must get
all 20 (N x 20 frames). Frames delivered/s = frames / (last frame received - first POST sent); delivery
latency = receive time - POST send time. If the machine cannot open N sockets, the scenario steps down
(1,000 -> 500 -> 250) and says so.

The baseline (bench/channel_layers.py's `run_case`): the same number of channels, each a task receiving in
one process, in one group of the same layer class (RedisPubSubChannelLayer) on the same Redis, and a
sender in another process doing the same number of group_sends back to back; the same two figures.
What separates the two is everything a frame takes beyond the layer: HTTP, database, relay, Kafka, the
forwarder, daphne's consumers and websocket framing, and the clients reading the frames.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from bench.channel_layers import run_case
from bench.httpclient import Connection
from bench.scenarios.latency import FIRST_EVENT_CAP, post_and_receive
from bench.seed import chat_stream_urls, create_chat, token_for, tokens_for
from bench.stack import Stack
from bench.wsclient import Audience

SUBSCRIBERS = (1000, 500, 250)  # tried in turn until the machine holds them
MESSAGES = 20
IDLE_CAP, DRAIN_CAP = 10.0, 90.0


async def connect_stepping_down(urls: list[str]) -> tuple[Audience, list[str]]:
    notes = []
    for count in SUBSCRIBERS:
        try:
            return await Audience.connect(urls[:count]), notes
        except ConnectionError as error:
            notes.append(f"{count} subscribers: {error}")
    raise RuntimeError(f"could not open even {SUBSCRIBERS[-1]} websockets: {notes}")


async def scenario(stack: Stack, chat_id: str, writer: str, readers: list[str]) -> dict:
    audience, notes = await connect_stepping_down(chat_stream_urls(stack, chat_id, readers))
    poster = Connection("127.0.0.1", stack.port, writer)
    path = f"/api/chats/{chat_id}/messages/"
    try:
        warmup = await post_and_receive(stack, audience, [poster], path, None, 1, FIRST_EVENT_CAP, FIRST_EVENT_CAP)
        if warmup["lost"]:
            raise RuntimeError(f"the warm-up message did not reach every subscriber: {warmup}")
        burst = await post_and_receive(stack, audience, [poster], path, None, MESSAGES, IDLE_CAP, DRAIN_CAP)
        return {**burst, "subscribers_wanted": SUBSCRIBERS[0], "step_down": notes}
    finally:
        await poster.close()
        await audience.close()


def run(stack: Stack) -> dict:
    writer, readers = token_for("bench-fanout-writer"), tokens_for("bench-fanout-reader", SUBSCRIBERS[0])
    chat_id = create_chat(stack, writer, "fan-out")
    service = asyncio.run(scenario(stack, chat_id, writer, readers))
    redis_address = urlsplit(stack.env["REDIS_URL"]).netloc
    raw = run_case("pubsub", "burst", redis_address, service["subscribers"], MESSAGES, 0.0)
    if "error" in raw:
        raise RuntimeError(f"raw group_send baseline failed: {raw['error']}")
    service_rate, raw_rate = service["delivered_per_s"], raw.get("delivered_per_s")
    return {
        "service": service,
        "raw": raw,
        "ratio": round(service_rate / raw_rate, 4) if service_rate and raw_rate else None,
    }
