"""`make bench`: measure the chat service against baselines taken in the same run on the same machine.

Why: a figure alone says little on a shared 2-core machine; a figure next to what the parts it is built
from do on the same machine, at the same moment, says what our code costs. This starts the whole stack
as real processes (bench/stack.py), runs the seven scenarios (bench/scenarios/), each with bounded counts
and durations, and writes bench/results/latest.json and latest.md (also printed). See bench/README.md.

Order matters: the relay scenario runs before the service's relay process exists (it would take the
rows); the footprint runs on a fresh daphne (freed memory would hide the cost of new sockets); the heavy
fan-out runs last.
"""

import sys
from pathlib import Path

# Run as a script: import `bench`, `chats` and `chatproject` from the project root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from bench import report  # noqa: E402
from bench.stack import Stack  # noqa: E402

OPEN_FILES = 8192  # 1,000 subscribers, the 1,000 sockets of the footprint, connections, logs


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # inherited by daphne


def step(name: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.0f}s] {name}", flush=True)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through Stack's cleanup
    raise_open_files_limit()
    started = time.monotonic()
    with Stack.create() as stack:
        step(f"stack: database {stack.database}, Kafka {stack.env['KAFKA_BOOTSTRAP_SERVERS']}, "
             f"Redis {stack.env['REDIS_URL']}; migrating", started)
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        # Imported once Django is set up: they load models.
        from bench.scenarios import (
            fanout,
            footprint,
            ingest,
            latency,
            relay,
            resume,
            typing,
        )

        results = {}

        def scenario(name: str, title: str, run) -> None:
            """Run one scenario; one that breaks is reported as broken, and the others still run."""
            step(title, started)
            try:
                results[name] = run()
            except Exception as error:  # noqa: BLE001 - reported in the table, with its traceback in the JSON
                results[name] = {"error": f"{type(error).__name__}: {error}"[:1000],
                                 "traceback": traceback.format_exc()[-4000:]}
                step(f"{name} broke: {results[name]['error'][:300]}", started)

        scenario("relay", "2 relay: 20,000 outbox events vs raw kafka-python", relay.run)
        step("starting daphne, relay_outbox, forward_events", started)
        stack.start_service()
        scenario("footprint", "5 footprint: idle CPU, memory per idle websocket", lambda: footprint.run(stack))
        scenario("ingest", "1 ingest: 32 clients, the bare endpoint and the messages endpoint taking turns",
                 lambda: ingest.run(stack))
        scenario("latency", "3 end-to-end latency: 100 subscribers (client processes of their own) at 5, 50, 100, "
                 "then 200 msg/s", lambda: latency.run(stack))
        scenario("typing", "6 typing burst: 100 subscribers at 5 msg/s, without and with all 100 typing every ~1 s, "
                 "in turns", lambda: typing.run(stack))
        scenario("resume", "7 resume: 10,000 messages replayed to one client, one frame each and batched, vs the "
                 "database read and a raw socket write", lambda: resume.run(stack))
        scenario("fanout", "4 fan-out: up to 1,000 subscribers, then raw group_send", lambda: fanout.run(stack))
        machine = report.machine_facts(stack)
    print()
    print(report.write(results, machine, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
