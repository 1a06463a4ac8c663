"""`make chaos` / `make chaos-short`: break the running service on purpose and count what reached whom.

Starts the whole stack as real processes (bench/stack.py: embedded Kafka and Redis, a fresh SQLite file or
DATABASE_URL, two daphne web processes sharing the port, relay_outbox, forward_events) on the production
settings, with the write and registration throttles set out of reach. Then runs each scenario of the
profile (bench/chaos/scenarios.py) on chats and users of its own, reads the Kafka topic from the start,
judges every scenario against the expectations (bench/chaos/report.py), writes
bench/chaos/results/latest.{md,json} and exits 1 if any expectation failed. See bench/chaos/README.md.
"""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent.parent)

import argparse
import asyncio
import os
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from bench.run import raise_open_files_limit
from bench.stack import Stack

CHAOS_ENV = {
    "CHAT_WRITE_RATE": "1000000/minute",  # throttles stay in the request path but never refuse the load
    "CHAT_REGISTER_RATE": "1000000/hour",
    "WEB_CONCURRENCY": "2",
}
WEB_PROCESSES = 2  # the web-kill scenario needs a survivor; every scenario runs on the same two


def step(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.0f}s] {text}", flush=True)


def revive(stack: Stack, started: float) -> list[str]:
    """Before a scenario: everything the previous one left dead is started again (and said so)."""
    notes = []
    for name, process in list(stack.processes.items()):
        if name == "relay.2":  # only the two-relay scenario runs it
            process.stop()
            del stack.processes[name]
            continue
        if not process.alive():
            notes.append(f"{name} was not running before this scenario (exit code {process.popen.returncode}); restarted")
            stack.spawn(name)
    for server in stack.embedded:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)  # in case a scenario was cut short while it was stopped
        elif server.name == "redis":
            notes.append("redis was not running before this scenario; restarted on its port")
            stack.restart_redis()
    for note in notes:
        step(note, started)
    return notes


@contextmanager
def scratch_postgres_database() -> Iterator[None]:
    """With a PostgreSQL DATABASE_URL, the run uses a database of its own on that server, created here and
    dropped at the end, as it uses a fresh SQLite file otherwise: the named database is never written."""
    from urllib.parse import urlparse

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield
        return
    import psycopg

    parsed = urlparse(url)
    name = f"chaos_{os.getpid()}_{int(time.time())}"
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = parsed._replace(path=f"/{name}").geturl()
    try:
        yield
    finally:
        os.environ["DATABASE_URL"] = url
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keep_logs(stack: Stack) -> None:
    """The service's logs of this run, beside the results (the stack's directory is removed on exit)."""
    import shutil

    target = Path(__file__).resolve().parent / "results" / "logs"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for log in stack.workdir.glob("*.log"):
        shutil.copy(log, target / log.name)
    for server in stack.embedded:
        if server.log is not None and server.log.exists():
            shutil.copy(server.log, target / f"{server.name}.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("short", "full"), default="full")
    parser.add_argument("--only", help="comma-separated scenario names (for development)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_open_files_limit()
    started = time.monotonic()
    with scratch_postgres_database(), Stack.create(settings_module="chatproject.settings", extra_env=CHAOS_ENV, prefix="chaos") as stack:
        stack.web_processes = WEB_PROCESSES
        def embedded(name: str) -> bool:
            return any(server.name == name for server in stack.embedded)

        postgres = stack.env["DATABASE_URL"].startswith(("postgres", "postgresql"))
        step(f"stack: database {stack.database} ({'PostgreSQL' if postgres else 'SQLite'}), Kafka "
             f"{stack.env['KAFKA_BOOTSTRAP_SERVERS']}, Redis {stack.env['REDIS_URL']}; migrating", started)
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        from bench.chaos import kafka_check, report
        from bench.chaos.harness import Context, new_run_id
        from bench.chaos.scenarios import run, scenarios, seeded_rng

        step(f"starting {WEB_PROCESSES} web processes, relay_outbox, forward_events", started)
        stack.start_service()
        run_id = new_run_id()
        chosen = scenarios(args.profile, postgres)
        if args.only:
            names = set(args.only.split(","))
            chosen = [spec for spec in chosen if spec.name in names]
        results = []
        for spec in chosen:
            notes = revive(stack, started)
            step(f"{spec.name}: {spec.title}; {spec.subscribers} subscribers, {spec.posts} posts at {spec.rate:g}/s", started)
            ctx = Context(stack, spec, run_id, seeded_rng(spec.name))
            ctx.notes.extend(notes)
            budget = spec.posts / spec.rate + spec.converge_cap + 150
            try:
                result = asyncio.run(asyncio.wait_for(run(ctx), budget))
            except BaseException as error:
                if isinstance(error, KeyboardInterrupt | SystemExit):
                    raise
                result = {"name": spec.name, "title": spec.title, "error": "".join(
                    traceback.format_exception_only(type(error), error)).strip() or type(error).__name__,
                    "traceback": traceback.format_exc()[-3000:]}
                step(f"{spec.name} broke: {result['error']}", started)
            results.append(result)
            if "error" not in result:
                step(f"{spec.name}: {result['posts_succeeded']}/{result['posts_attempted']} posts, 5xx "
                     f"{result['http_5xx']}, edits/deletes {result['changes_succeeded']}/{result['changes_attempted']}, "
                     f"lost {result['lost']}, stale {result['stale']}, dup {result['ws_duplicates']}, order "
                     f"{result['order_violations']}, gaps after resume {result['gaps_after_resume']}, recovery "
                     f"{result['recovery_s']}, closes {result['closes']}; {result['ended_by']}", started)
        revive(stack, started)
        step("reading the Kafka topic from the start", started)
        try:
            records = kafka_check.read_topic(stack.env["KAFKA_BOOTSTRAP_SERVERS"], stack.env["KAFKA_TOPIC"])
        except Exception as error:  # noqa: BLE001
            records = None
            step(f"could not read the topic: {error}", started)
        finished = []
        for result in results:
            if "error" in result:
                result.update(passed=False, failures=[f"the scenario broke: {result['error']}"])
                finished.append(result)
                continue
            truth = result.pop("_truth")
            if records is not None:
                result.update(kafka_check.check(records, result["chat_ids"], truth))
            result["failures"] = report.judge(result)
            if records is None:
                result["failures"].append("the Kafka topic could not be read")
            result["passed"] = not result["failures"]
            finished.append(result)
        run_summary = {
            "profile": args.profile,
            "finished_at": report.now(),
            "seconds": time.monotonic() - started,
            "database": "PostgreSQL (DATABASE_URL)" if postgres else "SQLite (fresh file)",
            "web_processes": WEB_PROCESSES,
            "kafka": "embedded Tansu" if embedded("kafka") else stack.env["KAFKA_BOOTSTRAP_SERVERS"],
            "redis": "embedded redis-server" if embedded("redis") else stack.env["REDIS_URL"],
            "machine": report.machine(),
            "passed": all(result["passed"] for result in finished),
            "scenarios": [r for r in finished if "error" not in r],
            "broken": [r for r in finished if "error" in r],
            "logs": "bench/chaos/results/logs/",
        }
        text = report.write(run_summary)
        keep_logs(stack)
    print()
    print(text)
    for broken in run_summary["broken"]:
        print(f"BROKEN {broken['name']}: {broken['error']}")
    print(f"{'PASS' if run_summary['passed'] else 'FAIL'}: {time.monotonic() - started:.0f} s; "
          f"bench/chaos/results/latest.md")
    return 0 if run_summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
