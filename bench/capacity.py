"""`make capacity`: issue 13's capacity curve (target 1's reporting), as a command of its own.

For each configuration (database x web processes x subscribers) the highest rate of RATES msg/s into one chat
that holds the objective: p99 POST -> frame <= 100 ms, 0 lost, 0 duplicates. It climbs the rates and stops at
the first that fails. The stack is bench/stack.py's (one per run, the web processes restarted between web
process counts); each step is scenario 3's (bench/scenarios/latency.py: its client processes, its run_phase),
STEP_SECONDS of posting. Writes bench/results/capacity.{md,json} and prints the table.

    .venv/bin/python bench/capacity.py [--quick] [--batch] [--subscribers 100,1000] [--web 1,2]

--quick: 100 subscribers only. --batch: the subscribers connect with ?batch=1, as the bundled page does (frames
queued for a socket go out as one message); its rows are kept beside those without. The database is a fresh SQLite file, or PostgreSQL when DATABASE_URL is set
(a scratch database: users, chats and messages are written into it).
"""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import signal
import time

from bench.run import raise_open_files_limit, step
from bench.stack import Stack

RATES = (10, 20, 50, 100, 200)  # msg/s, climbed in turn
STEP_SECONDS = 10.0
WARMUP = (10, 3.0)  # msg/s, seconds: before the climb, not judged
P99_MS = 100.0
RESULTS = Path(__file__).resolve().parent / "results"


def holds(run: dict) -> bool:
    p99 = run["latency_ms"]["p99"]
    return (p99 is not None and p99 <= P99_MS and run["lost"] == 0 and run["duplicates"] == 0
            and run["posts_failed"] == 0)


def summary(run: dict | None) -> dict | None:
    if run is None:
        return None
    return {"rate": run["rate"], "achieved_rate": run["achieved_rate"], "p50_ms": run["latency_ms"]["p50"],
            "p99_ms": run["latency_ms"]["p99"], "lost": run["lost"], "duplicates": run["duplicates"],
            "posts_failed": run["posts_failed"], "web_cpu_percent": run["cpu_percent"].get("web")}


def measure(stack: Stack, subscribers: int, label: str, batch: bool = False) -> dict:
    from bench.scenarios import latency
    from bench.seed import create_chat, token_for, tokens_for

    writer = token_for(f"capacity-{label}-writer")
    readers = tokens_for(f"capacity-{label}-reader", subscribers)
    chat_id = create_chat(stack, writer, f"capacity {label}")
    # The first step warms every web process (a cold one's first requests are slow, and 1 slow post in 100 is
    # the p99); it is reported apart and not judged.
    runs = latency.scenario(stack, chat_id, writer, readers,
                            rates=(WARMUP, *((rate, STEP_SECONDS) for rate in RATES)),
                            keep_going=lambda run: run["seconds"] == WARMUP[1] or holds(run), batch=batch)
    warmup, runs = runs[0], runs[1:]
    held = [run for run in runs if holds(run)]
    failed = next((run for run in runs if not holds(run)), None)
    return {"subscribers": subscribers, "highest": summary(held[-1]) if held else None,
            "first_failing": summary(failed), "warmup": summary(warmup), "runs": runs}


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(configs: list[dict]) -> str:
    lines = [("| database | web processes | subscribers | frames | highest rate holding p99 <= 100 ms, 0 lost, 0 dup (msg/s) "
              "| p50 / p99 ms at that rate | web CPU % at that rate | first failing rate: p99 ms (lost / dup) |"),
             "|---|---|---|---|---|---|---|---|"]
    for c in configs:
        high, fail = c["highest"], c["first_failing"]
        held = f"**{high['rate']:g}**" if high else f"none (< {RATES[0]})"
        at = f"{fmt(high['p50_ms'])} / {fmt(high['p99_ms'])}" if high else "-"
        cpu = fmt(high["web_cpu_percent"], 0) if high else "-"
        failing = (f"{fail['rate']:g}: {fmt(fail['p99_ms'])} ({fail['lost']:,} / {fail['duplicates']:,}; "
                   f"{fmt(fail['achieved_rate'])} achieved)" if fail else f"none up to {RATES[-1]}")
        frames = "batch=1" if c.get("batch") else "one per message"
        lines.append(f"| {c['database']} | {c['web_processes']} | {c['subscribers']:,} | {frames} | {held} | {at} | {cpu} "
                     f"| {failing} |")
    return "\n".join(lines)


def write(configs: list[dict], machine: dict, seconds: float) -> str:
    """bench/results/capacity.{md,json}: this run's configurations replace the earlier ones of the same database
    and frames (with or without batches); the others' rows (from their own runs) are kept, so one table shows all."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "capacity.json"
    database = (configs[0]["database"] + (" batch=1" if configs[0].get("batch") else "")) if configs else None
    earlier = json.loads(path.read_text()) if path.exists() else {}
    runs = {db: r for db, r in earlier.get("runs", {}).items() if db != database}
    runs[database] = {"machine": machine, "run_seconds": round(seconds, 1), "rates": RATES,
                      "step_seconds": STEP_SECONDS, "configs": configs}
    everything = [c for r in runs.values() for c in r["configs"]]
    notes = "\n".join(f"- {db}: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items() if k != "web_processes")
                      + f"; ran for {r['run_seconds']:.0f} s" for db, r in runs.items())
    text = (f"# Capacity at the objective (issue 13, target 1)\n\nRates {', '.join(map(str, RATES))} msg/s into one "
            f"chat, {STEP_SECONDS:g} s of posting each, climbing until one fails (after a 3 s warm-up at 10 msg/s, not judged); web CPU in % of one core, summed "
            f"over the web processes. `.venv/bin/python bench/capacity.py` (`make capacity`).\n\n{table(everything)}\n\n"
            f"Runs:\n{notes}\n")
    (RESULTS / "capacity.md").write_text(text)
    path.write_text(json.dumps({"objective": {"p99_ms": P99_MS, "lost": 0, "duplicates": 0}, "runs": runs}, indent=2))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 subscribers only")
    parser.add_argument("--batch", action="store_true", help="subscribers connect with ?batch=1")
    parser.add_argument("--subscribers", default=None, help="comma-separated, default 100,1000")
    parser.add_argument("--web", default="1,2", help="web process counts, comma-separated")
    args = parser.parse_args()
    subscriber_counts = [int(n) for n in (args.subscribers or ("100" if args.quick else "100,1000")).split(",")]
    web_counts = [int(n) for n in args.web.split(",")]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_open_files_limit()
    started = time.monotonic()
    configs: list[dict] = []
    with Stack.create(prefix="capacity") as stack:
        step(f"stack: database {stack.database}; migrating", started)
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        from django.db import connection

        from bench import report

        database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
        for web in web_counts:
            stack.stop_service()
            stack.web_processes = web
            step(f"starting {web} web process(es), relay_outbox, forward_events", started)
            stack.start_service()
            for subscribers in subscriber_counts:
                step(f"{database}, {web} web, {subscribers} subscribers: climbing {RATES} msg/s", started)
                result = measure(stack, subscribers, f"{web}w{subscribers}s{int(time.time())}", args.batch)
                configs.append({"database": database, "web_processes": web, "batch": args.batch, **result})
                high, fail = result["highest"], result["first_failing"]
                step(f"  held up to {high['rate'] if high else 'none'}; first failing "
                     f"{fail['rate'] if fail else 'none'} (p99 {fail['p99_ms'] if fail else '-'} ms)", started)
        machine = report.machine_facts(stack)
    text = write(configs, machine, time.monotonic() - started)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
