"""The scenarios: what each one breaks, when, and for how long (bench/chaos/README.md says why).

A fault function gets the scenario's Context and the posting window's length in seconds; it runs
concurrently with the posts and returns before the posting ends. Times are relative to the first post.
"""

from __future__ import annotations

import asyncio
import random
import time

from bench.chaos.clients import Poster, Subscriber
from bench.chaos.harness import (
    BATCH_SIZE,
    Context,
    Fault,
    Scenario,
    committed,
    create_chats,
    drain,
    plan_posts,
    recovery,
    sigcont,
    sigstop,
    tally,
    tokens,
    users_for,
    wait_delivered,
)

CONNECT_CAP = 60.0  # seconds for every subscriber's first socket to open
POST_RETRY_FOR = 60.0  # seconds a post is retried (same Idempotency-Key) before it counts as given up


# ---- faults ----------------------------------------------------------------------------------------------

async def at(ctx: Context, seconds: float) -> None:
    await asyncio.sleep(max(0.0, ctx.load_started + seconds - time.monotonic()))


def relay_kills(every: float):
    async def fault(ctx: Context, load: float) -> None:
        """SIGKILL the relay `every` s after it is up (connected to Kafka), restart it, until the posts end."""
        await at(ctx, 1.0)
        while True:
            delay = every * (0.75 + ctx.rng.random() / 2)  # mid-batch at varying points
            # The last restart must leave posts after it, or its recovery cannot be measured.
            if time.monotonic() + delay + 3.0 > ctx.load_started + load:
                break
            await asyncio.sleep(delay)
            killed = await ctx.kill("relay")
            await ctx.restart("relay", killed, wait=True)
    return fault


def broker_stop(at_s: float, seconds: float):
    async def fault(ctx: Context, load: float) -> None:
        """SIGSTOP the broker for `seconds`, posts going on; SIGCONT; drain time measured from SIGCONT."""
        await at(ctx, at_s)
        kafka = ctx.embedded("kafka")
        stop = Fault(f"SIGSTOP kafka (pid {kafka.process.pid}) for {seconds:g}s", time.monotonic())
        ctx.faults.append(stop)
        sigstop(kafka.process.pid)
        try:
            await asyncio.sleep(seconds)
        finally:
            sigcont(kafka.process.pid)
            stop.ended = time.monotonic()
        ctx.drain_from = stop.ended
    return fault


def second_relay_killed(at_share: float):
    async def fault(ctx: Context, load: float) -> None:
        """A second relay runs from before the first post; one of the two is SIGKILLed at `at_share` of the
        posting and not restarted: the other must take over its rows, in order."""
        await at(ctx, load * at_share)
        killed = await ctx.kill("relay.2")
        killed.ended = killed.started  # nothing is restarted: the survivor is the recovery
        killed.note = "not restarted; relay carries on alone"
    return fault


def forwarder_kills(times: list[float]):
    async def fault(ctx: Context, load: float) -> None:
        for when in times:
            await at(ctx, when)
            killed = await ctx.kill("forwarder")
            await ctx.restart("forwarder", killed, wait=False)
    return fault


def redis_restarts(times: list[float], down_for: float):
    async def fault(ctx: Context, load: float) -> None:
        """SIGKILL the embedded redis-server, then start it again on its port `down_for` s later (empty).
        A negative time counts from the end of the posting: frames lost then are the last of their chats,
        with no later frame to reveal the gap."""
        for when in times:
            await at(ctx, when if when >= 0 else load + when)
            redis = ctx.embedded("redis")
            killed = Fault(f"SIGKILL redis (pid {redis.process.pid}) for {down_for:g}s", time.monotonic())
            ctx.faults.append(killed)
            redis.process.kill()
            redis.process.wait()
            await asyncio.sleep(down_for)
            killed.ended = time.monotonic()
            await asyncio.to_thread(ctx.stack.restart_redis)
    return fault


def web_kill(at_s: float, down_for: float):
    async def fault(ctx: Context, load: float) -> None:
        """SIGKILL the web process holding the most subscriber sockets; start it again `down_for` s later."""
        await at(ctx, at_s)
        sockets = ctx.web_sockets()
        victim = max(sockets, key=sockets.get)
        killed = await ctx.kill(victim)
        killed.note = f"sockets per web process before: {sockets}"
        await asyncio.sleep(down_for)
        await ctx.restart(victim, killed, wait=True)
    return fault


async def no_fault(ctx: Context, load: float) -> None:
    """The reconnect storm: the clients close their own sockets at random (Scenario.storm_mean_s)."""


# ---- profiles --------------------------------------------------------------------------------------------

def scenarios(profile: str, postgres: bool) -> list[Scenario]:
    if profile == "short":
        return [
            Scenario("relay_kill", "relay SIGKILL every ~2 s, restarted", chats=50, subscribers=50, sockets_per_user=10,
                     posts=400, rate=40, converge_cap=15, fault=relay_kills(2.0)),
            Scenario("forwarder_kill", "forwarder SIGKILL + restart", chats=10, subscribers=50, sockets_per_user=10,
                     posts=300, rate=25, converge_cap=15, fault=forwarder_kills([3.0])),
            Scenario("redis_restart", "Redis SIGKILL, restarted on its port", chats=10, subscribers=100,
                     sockets_per_user=10, posts=250, rate=25, converge_cap=15, fault=redis_restarts([-2.5], 1.0)),
            Scenario("web_kill", "one of two web processes SIGKILLed", chats=8, subscribers=64, sockets_per_user=16,
                     posts=250, rate=25, converge_cap=60, fault=web_kill(3.0, 2.0)),
        ]
    chosen = [
        Scenario("relay_kill", "relay SIGKILL every ~2 s, restarted", chats=50, subscribers=50, sockets_per_user=10,
                 posts=3000, rate=50, converge_cap=30, fault=relay_kills(2.0)),
        Scenario("broker_stop", "Kafka SIGSTOP 30 s, then SIGCONT", chats=20, subscribers=40, sockets_per_user=10,
                 posts=1000, rate=20, converge_cap=60, fault=broker_stop(8.0, 30.0), kafka_dup_per_relay_retry=True),
    ]
    if postgres:
        chosen.append(Scenario("two_relays", "two relays (PostgreSQL), one SIGKILLed halfway", chats=200,
                               subscribers=100, sockets_per_user=10, posts=3000, rate=50, converge_cap=30,
                               fault=second_relay_killed(0.5), options={"second_relay": True}))
    chosen += [
        Scenario("forwarder_kill", "forwarder SIGKILL + restart, twice", chats=10, subscribers=50, sockets_per_user=10,
                 posts=1000, rate=25, converge_cap=30, fault=forwarder_kills([8.0, 24.0])),
        Scenario("redis_restart", "Redis SIGKILL, restarted on its port, twice", chats=20, subscribers=120,
                 sockets_per_user=10, posts=1000, rate=25, converge_cap=30, fault=redis_restarts([8.0, -2.5], 1.0)),
        Scenario("web_kill", "one of two web processes SIGKILLed", chats=12, subscribers=120, sockets_per_user=15,
                 posts=750, rate=25, converge_cap=90, fault=web_kill(8.0, 2.0)),
        Scenario("reconnect_storm", "100 clients reconnecting at random", chats=10, subscribers=100,
                 sockets_per_user=10, posts=1000, rate=25, converge_cap=30, fault=no_fault, storm_mean_s=3.0,
                 recovery_measured=False),
    ]
    return chosen


# ---- running one ---------------------------------------------------------------------------------------

async def run(ctx: Context) -> dict:
    spec, stack = ctx.scenario, ctx.stack
    label = f"chaos {ctx.run_id} {spec.name}"
    owner = (await asyncio.to_thread(tokens, f"chaos-{ctx.run_id}-{spec.name}-owner", 1))[0]
    chat_ids = await create_chats(stack, owner, label, spec.chats)
    users = await asyncio.to_thread(tokens, f"chaos-{ctx.run_id}-{spec.name}-reader",
                                    users_for(spec.subscribers, spec.sockets_per_user))
    posters = await asyncio.to_thread(tokens, f"chaos-{ctx.run_id}-{spec.name}-writer", 5)
    subscribed = chat_ids[: spec.subscribed_chats or min(spec.chats, spec.subscribers)]
    every = round(1 / spec.seq_share) if spec.seq_share else 0  # one subscriber in `every` on after_seq
    subscribers = [
        Subscriber(n, f"ws://127.0.0.1:{stack.port}/ws/chats/{subscribed[n % len(subscribed)]}/?token={users[n // spec.sockets_per_user]}",
                   subscribed[n % len(subscribed)], f"user {n // spec.sockets_per_user}", spec.storm_mean_s,
                   protocol="seq" if every and n % every == every - 1 else "version")
        for n in range(spec.subscribers)
    ]
    if spec.options.get("second_relay"):
        await asyncio.to_thread(stack.spawn, "relay.2", "relay", True)
    for sub in subscribers:
        sub.start()
    watchdog = asyncio.create_task(ctx.watchdog())
    result: dict = {"name": spec.name, "title": spec.title}
    poster = Poster("127.0.0.1", stack.port)
    try:
        connect_started = time.monotonic()
        await asyncio.wait([asyncio.create_task(sub.connected.wait()) for sub in subscribers], timeout=CONNECT_CAP)
        result["subscribers_connected"] = sum(sub.connected.is_set() for sub in subscribers)
        result["connect_s"] = round(time.monotonic() - connect_started, 1)
        posts = plan_posts(chat_ids, posters, spec.posts, ctx.rng, spec.max_size_share, owner, spec.change_share)
        load = spec.posts / spec.rate
        ctx.load_started = time.monotonic()
        ctx.drain_from = None
        cpu_before = _cpu()
        fault = asyncio.create_task(spec.fault(ctx, load))
        await poster.run(posts, spec.rate, POST_RETRY_FOR)
        posting_s = time.monotonic() - ctx.load_started
        await fault
        ended_by, waited = await wait_delivered(subscribers, subscribed, spec.converge_cap)
        result["client_cpu_percent"] = round(100 * (_cpu() - cpu_before) / (time.monotonic() - ctx.load_started), 1)
        truth = await asyncio.to_thread(committed, chat_ids)
    finally:
        watchdog.cancel()
        await asyncio.gather(*(sub.stop() for sub in subscribers), return_exceptions=True)
        poster.close()
    result.update(
        chat_ids=chat_ids,
        load_s=round(load, 1),
        posting_s=round(posting_s, 1),
        posts_behind_schedule_max_s=round(poster.behind_schedule_max, 2),
        rate=spec.rate,
        max_size_posts=sum(1 for post in posts if post.kind.startswith("max")),
        max_size_edits=sum(1 for post in posts for change in post.changes
                           if change.kind == "edit" and len(change.text) == 4096),
        ended_by=ended_by,
        waited_after_posts_s=waited,
        **tally(ctx, posts, subscribers, truth),
        faults=recovery(ctx.faults, posts, subscribers) if spec.recovery_measured else [
            {"fault": f"{spec.subscribers} clients closing their sockets at random (mean {spec.storm_mean_s:g}s)"}],
        relay_kills=ctx.relay_kills,
        relay_retries=ctx.relay_retries(),
        unexpected_exits=ctx.unexpected_exits,
        notes=ctx.notes,
        evidence=ctx.evidence(),
        _truth={chat_id: {"seqs": set(chat.messages), "version": chat.version} for chat_id, chat in truth.items()},
    )
    result["kafka_dup_allowed"] = BATCH_SIZE * (ctx.relay_kills + (result["relay_retries"] if spec.kafka_dup_per_relay_retry else 0))
    if ctx.drain_from is not None:
        result["drain_s"] = drain(ctx.drain_from, posts, subscribers)
    recoveries = [fault.get("recovery_s") for fault in result["faults"]
                  if spec.recovery_measured and not fault.get("unmeasured")]
    result["recovery_s"] = (None if any(r is None for r in recoveries) else max(recoveries)) if recoveries else None
    result["recovered"] = bool(recoveries) and all(r is not None for r in recoveries)
    return result


def _cpu() -> float:
    import os

    times = os.times()
    return times.user + times.system


def seeded_rng(name: str) -> random.Random:
    return random.Random(f"chaos-{name}")
