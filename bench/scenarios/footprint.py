"""Scenario 5, footprint: the web processes' memory per idle websocket, and the idle CPU of the three processes.

Runs first, on a freshly started daphne: after load, freed memory would be reused by new sockets and
hide their cost. A few sockets of each kind are opened and closed first, so code loaded on first use is
not counted. Then, with every socket kept open, RSS steps of two batches of 500 bare sockets (`/bench/ws/`,
accepted and nothing else: daphne's own cost), then of two batches of 500 chat sockets (token auth, the
consumer, a channel and a group on the Redis pub/sub layer, a place in the chat's presence). Bytes per socket
= the second batch's RSS step / 500, chat against bare: what one more idle socket costs a process that already
holds hundreds. The first batches are reported too, and are not per-socket costs: the first bare batch fills
memory the process had freed since startup (15-18 KiB a socket against ~21 for the second), and the first chat
batch pays once for what the process keeps for any number of sockets, such as the Redis connections it opens
under a burst of handshakes, and for the handshakes' peak of temporary memory (~29-32 KiB against ~27).
(bench/README.md, "Memory per idle socket".)

The chat sockets are one user each, in chats of 10. Until issue 12 they were 500 users in one chat; since every
user's arrival is announced to everyone already there (`presence.joined`), 500 users opening sockets to one
chat at once make ~125,000 frames, and on this machine about half of their handshakes timed out behind them
(bench/README.md, "Typing and presence (issue 12)"), which is what scenario 4 shows; here the figure is memory.

Idle CPU: the three processes over 10 s with nothing to do (relay polling, forwarder polling, daphne
waiting), next to the embedded Kafka and Redis over the same window when they are embedded. Then the forwarder
alone again, restarted with a 500 ms fetch wait (KAFKA_FETCH_MAX_WAIT_MS): an idle fetch is held for the whole
wait by the embedded broker and by Apache Kafka alike (Kafka answers early only when a record arrives), so this
is the idle forwarder against a broker that honours fetch waits, issue 13's target 5. The default on the
embedded broker is 20 ms, because it holds busy fetches for the whole wait too.
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
PER_CHAT = 10  # users per chat (see above)
WARMUP_SOCKETS = 10
SETTLE_SECONDS = 1.0  # after opening sockets, before reading RSS
LONG_FETCH_WAIT_MS = 500  # kafka-python's default, the setting's default for a broker of your own


async def memory_per_socket(stack: Stack, chat_urls: list[str]) -> dict:
    """RSS steps of daphne for two batches of SOCKETS bare sockets, then two of SOCKETS chat sockets (one user
    each), all kept open; the per-socket figures are the second batches'."""
    webs = [psutil.Process(pid) for pid in stack.web_pids]

    def web_rss() -> int:  # the sockets spread over every web process
        return sum(web.memory_info().rss for web in webs)

    bare_urls = [f"ws://127.0.0.1:{stack.port}{BARE_WEBSOCKET_PATH}"] * SOCKETS
    warmup, chat_urls = chat_urls[:WARMUP_SOCKETS], chat_urls[WARMUP_SOCKETS:]
    await close_sockets(await open_sockets(bare_urls[:WARMUP_SOCKETS] + warmup))
    await asyncio.sleep(SETTLE_SECONDS)
    idle_rss = rss = web_rss()
    held, steps = [], []
    for batch in (bare_urls, bare_urls, chat_urls[:SOCKETS], chat_urls[SOCKETS:]):
        held += await open_sockets(batch)
        await asyncio.sleep(SETTLE_SECONDS)
        steps.append(web_rss() - rss)
        rss += steps[-1]
    refused = sum(ws.close_code is not None for ws in held)
    await close_sockets(held)
    if refused:
        raise RuntimeError(f"the server closed {refused} of the {len(held)} idle sockets")
    first_bare, bare, first_chat, chat = (round(step / SOCKETS) for step in steps)
    return {
        "sockets": SOCKETS,
        "web_rss_idle_mb": round(idle_rss / 2**20, 1),
        "web_rss_with_sockets_mb": round(rss / 2**20, 1),
        "bare_bytes_per_socket": bare,
        "chat_bytes_per_socket": chat,
        "first_batch_bare_bytes_per_socket": first_bare,
        "first_batch_chat_bytes_per_socket": first_chat,
    }


def idle_forwarder_with_fetch_wait(stack: Stack, wait_ms: int) -> dict[str, float]:
    """Idle CPU of the forwarder (and the broker, if embedded) restarted with KAFKA_FETCH_MAX_WAIT_MS=wait_ms;
    the forwarder is restarted as it was afterwards."""
    with stack.restarted_with("forwarder", KAFKA_FETCH_MAX_WAIT_MS=str(wait_ms)):
        return idle_forwarder(stack)


def idle_forwarder(stack: Stack) -> dict[str, float]:
    """CPU of the forwarder and the embedded broker (if embedded) over IDLE_SECONDS with nothing to forward."""
    time.sleep(2 * SETTLE_SECONDS)  # a restarted forwarder is back in its group, from its committed offsets
    with cpu_usage({role: pids for role, pids in stack.pids().items() if role in ("forwarder", "kafka")}) as cpu:
        time.sleep(IDLE_SECONDS)
    return cpu


def run(stack: Stack) -> dict:
    with cpu_usage(stack.pids()) as idle_cpu:
        time.sleep(IDLE_SECONDS)
    long_wait_cpu = idle_forwarder_with_fetch_wait(stack, LONG_FETCH_WAIT_MS)
    owner = token_for("bench-footprint-owner")
    tokens = tokens_for("bench-footprint", WARMUP_SOCKETS + 2 * SOCKETS)
    chats = [create_chat(stack, owner, f"footprint {n}") for n in range((len(tokens) + PER_CHAT - 1) // PER_CHAT)]
    chat_urls = [url for n, chat_id in enumerate(chats)
                 for url in chat_stream_urls(stack, chat_id, tokens[n * PER_CHAT:(n + 1) * PER_CHAT])]
    return {"idle_seconds": IDLE_SECONDS, "idle_cpu_percent": idle_cpu, "chats": len(chats),
            "fetch_wait_ms": int(stack.env.get("KAFKA_FETCH_MAX_WAIT_MS", LONG_FETCH_WAIT_MS)),
            "long_fetch_wait_ms": LONG_FETCH_WAIT_MS, "long_fetch_wait_idle_cpu_percent": long_wait_cpu,
            **asyncio.run(memory_per_socket(stack, chat_urls))}
