"""Scenario 4, fan-out: 1,000 websocket subscribers of one chat, a burst of messages, against raw group_send.

The service side: N sockets on one chat, then 20 messages POSTed back to back; every subscriber must get
all 20 (N x 20 frames). Frames delivered/s = frames / (last frame received - first POST sent); delivery
latency = receive time - POST send time. If the machine cannot open N sockets, the scenario steps down
(1,000 -> 500 -> 250) and says so.

Two baselines, each with the same number of receivers and messages and the same two figures:
- raw group_send (bench/channel_layers.py's `run_case`): the same number of channels, each a task
  receiving in one process, in one group of the same layer class (RedisPubSubChannelLayer) on the same
  Redis, and a sender in another process doing the group_sends back to back. No sockets at all.
- bare websocket fan-out: the same number of real websockets on the same web processes, each held by the
  thinnest Channels consumer (bench/asgi.py: join a group, send each message's text as it is), and this
  process group_sending frames of the service's shape and size. What a frame costs in daphne, Channels
  and the clients, with none of the service.
service / bare is what the service adds; bare / raw is what delivering to sockets costs at all.

The service runs twice: one websocket message per frame, then (new sockets) with `?batch=1`, as the bundled page
connects: frames queued for a socket behind each other go out as one message. Issue 13's target 3 is the web
processes' CPU seconds per delivered frame against the bare consumer's (the service's include its 20 POSTs).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import urlsplit

from channels.layers import get_channel_layer

from bench.asgi import BARE_FANOUT_GROUP, BARE_FANOUT_PATH
from bench.channel_layers import run_case
from bench.httpclient import Connection
from bench.scenarios.latency import FIRST_EVENT_CAP, post_and_receive
from bench.seed import chat_stream_urls, create_chat, token_for, tokens_for
from bench.stack import Stack, cpu_usage
from bench.wsclient import Audience
from chats.pipeline.wire import message_frame

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


async def scenario(stack: Stack, chat_id: str, writer: str, readers: list[str], batch: bool = False) -> dict:
    audience, notes = await connect_stepping_down(chat_stream_urls(stack, chat_id, readers, batch))
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


async def group_send_frames(chat_id: str, seqs: range) -> dict[int, float]:
    """Frames shaped like the service's, sent to the bare consumers' group; returns seq -> send time."""
    layer, sent_at = get_channel_layer(), {}
    for seq in seqs:
        message = {"id": str(uuid.uuid4()), "chat_id": chat_id, "seq": seq, "text": f"at None/s, message {seq}",
                   "author": "bench-fanout-writer", "created_at": "2026-11-29T00:00:00.000000Z", "edited_at": None,
                   "deleted": False, "version": seq}
        text = json.dumps(message_frame(message, str(uuid.uuid4())))
        sent_at[seq] = time.monotonic()
        await layer.group_send(BARE_FANOUT_GROUP, {"type": "bench.frame", "text": text})
    return sent_at


async def bare_scenario(stack: Stack, subscribers: int, chat_id: str) -> dict:
    audience = await Audience.connect([f"ws://127.0.0.1:{stack.port}{BARE_FANOUT_PATH}"] * subscribers)
    try:
        audience.reset()
        warmup = await group_send_frames(chat_id, range(0, 1))
        await audience.wait_for(1, FIRST_EVENT_CAP, FIRST_EVENT_CAP)
        if audience.deliveries(warmup)["lost"]:
            raise RuntimeError("the warm-up frame did not reach every bare subscriber")
        audience.reset()
        with cpu_usage(stack.pids()) as cpu:
            sent_at = await group_send_frames(chat_id, range(1, MESSAGES + 1))
            ended_by = await audience.wait_for(MESSAGES, IDLE_CAP, DRAIN_CAP)
        return {**audience.deliveries(sent_at), "ended_by": ended_by, "cpu_percent": cpu,
                "web_cpu_seconds": round(cpu.cpu_seconds("web"), 3)}
    finally:
        await audience.close()


def run(stack: Stack) -> dict:
    writer, readers = token_for("bench-fanout-writer"), tokens_for("bench-fanout-reader", SUBSCRIBERS[0])
    chat_id = create_chat(stack, writer, "fan-out")
    service = asyncio.run(scenario(stack, chat_id, writer, readers))
    batched = asyncio.run(scenario(stack, chat_id, writer, readers[:service["subscribers"]], batch=True))
    bare = asyncio.run(bare_scenario(stack, service["subscribers"], chat_id))
    redis_address = urlsplit(stack.env["REDIS_URL"]).netloc
    raw = run_case("pubsub", "burst", redis_address, service["subscribers"], MESSAGES, 0.0)
    if "error" in raw:
        raise RuntimeError(f"raw group_send baseline failed: {raw['error']}")
    service_rate, bare_rate, raw_rate = service["delivered_per_s"], bare["delivered_per_s"], raw.get("delivered_per_s")
    for run in (service, batched, bare):  # target 3: what a frame costs the web processes, not how fast a burst went
        run["web_cpu_us_per_frame"] = (round(1e6 * run["web_cpu_seconds"] / run["frames_received"], 1)
                                       if run["frames_received"] else None)
    return {
        "service": service,
        "batched": batched,
        "bare": bare,
        "raw": raw,
        "ratio": round(service_rate / raw_rate, 4) if service_rate and raw_rate else None,
        "ratio_to_bare": round(service_rate / bare_rate, 4) if service_rate and bare_rate else None,
        "bare_ratio_to_raw": round(bare_rate / raw_rate, 4) if bare_rate and raw_rate else None,
    }
