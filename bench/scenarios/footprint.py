"""Scenario 5, footprint: the web processes' memory per idle websocket, and the idle CPU of the three processes.

Runs first, on a freshly started daphne: after load, freed memory would be reused by new sockets and
hide their cost. A few sockets of each kind are opened and closed first, so code loaded on first use is
not counted. Then, with all sockets kept open: RSS before, after 500 bare sockets (`/bench/ws/`, accepted
and nothing else: daphne's own cost), after 500 chat sockets (token auth, the consumer, a channel and a
group on the Redis pub/sub layer). Bytes per socket = the RSS step / 500, each against the bare one.

Idle CPU: the three processes over 10 s with nothing to do (relay polling, forwarder polling, daphne
waiting), next to the embedded Kafka and Redis over the same window when they are embedded.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from bench.asgi import BARE_WEBSOCKET_PATH
from bench.seed import chat_stream_urls, create_chat, token_for, tokens_for
from bench.stack import Stack, cpu_usage
from bench.wsclient import close_sockets, open_sockets

IDLE_SECONDS = 10.0
SOCKETS = 500
WARMUP_SOCKETS = 10
SETTLE_SECONDS = 1.0  # after opening sockets, before reading RSS


async def memory_per_socket(stack: Stack, chat_urls: list[str]) -> dict:
    """RSS steps of daphne for SOCKETS bare, then SOCKETS chat sockets (one user each), all kept open."""
    webs = [psutil.Process(pid) for pid in stack.web_pids]

    def web_rss() -> int:  # the sockets spread over every web process
        return sum(web.memory_info().rss for web in webs)

    bare_urls = [f"ws://127.0.0.1:{stack.port}{BARE_WEBSOCKET_PATH}"] * SOCKETS
    warmup, chat_urls = chat_urls[:WARMUP_SOCKETS], chat_urls[WARMUP_SOCKETS:]
    await close_sockets(await open_sockets(bare_urls[:WARMUP_SOCKETS] + warmup))
    await asyncio.sleep(SETTLE_SECONDS)
    idle_rss = web_rss()
    bare = await open_sockets(bare_urls)
    await asyncio.sleep(SETTLE_SECONDS)
    bare_rss = web_rss()
    chat = await open_sockets(chat_urls)
    await asyncio.sleep(SETTLE_SECONDS)
    chat_rss = web_rss()
    refused = sum(ws.close_code is not None for ws in bare + chat)
    await close_sockets(bare + chat)
    if refused:
        raise RuntimeError(f"the server closed {refused} of the {2 * SOCKETS} idle sockets")
    return {
        "sockets": SOCKETS,
        "web_rss_idle_mb": round(idle_rss / 2**20, 1),
        "web_rss_with_sockets_mb": round(chat_rss / 2**20, 1),
        "bare_bytes_per_socket": round((bare_rss - idle_rss) / SOCKETS),
        "chat_bytes_per_socket": round((chat_rss - bare_rss) / SOCKETS),
    }


def run(stack: Stack) -> dict:
    with cpu_usage(stack.pids()) as idle_cpu:
        time.sleep(IDLE_SECONDS)
    chat_id = create_chat(stack, token_for("bench-footprint-owner"), "footprint")
    chat_urls = chat_stream_urls(stack, chat_id, tokens_for("bench-footprint", WARMUP_SOCKETS + SOCKETS))
    return {"idle_seconds": IDLE_SECONDS, "idle_cpu_percent": idle_cpu,
            **asyncio.run(memory_per_socket(stack, chat_urls))}
