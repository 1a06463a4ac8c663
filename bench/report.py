"""The report: every figure next to its same-run baseline, the ratio, and the target it is held to.

Targets are the issue's (a 2-core machine; ratios are what count). A figure without a target is shown for
the record with "-" as its verdict. `write` prints the markdown and saves it with the full JSON.
"""

from __future__ import annotations

import json
import os
import platform
import timeit
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import redis
from django.db import connection

from bench.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    scenario: str
    figure: str
    measured: str
    baseline: str
    ratio: str
    target: str = "-"
    verdict: str = "-"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.0f} %"


def times(value: float | None, baseline: float | None) -> str:
    return f"{value / baseline:.1f}x" if value and baseline else "-"


def ms(latency: dict, *names: str) -> str:
    return " / ".join(number(latency[name], 1) for name in names)


def ingest_rows(r: dict) -> list[Row]:
    service, bare, alone = r["service"], r["bare"], r["one_client"]
    name = f"1 ingest, {r['clients']} clients"
    return [
        Row(name, "POST /api/chats/{id}/messages/ requests/s", number(service["requests_per_s"]),
            f"{number(bare['requests_per_s'])} (bare DRF row, same server)", percent(r["ratio"]), ">= 85 % of bare",
            verdict(r["ratio"] is not None and r["ratio"] >= 0.85)),
        Row(name, "latency p50 / p99 ms", ms(service["latency_ms"], "p50", "p99"),
            f"{ms(bare['latency_ms'], 'p50', 'p99')} (bare)",
            " / ".join(times(service["latency_ms"][q], bare["latency_ms"][q]) for q in ("p50", "p99"))),
        Row("1 ingest, 1 client alone", "latency p50 / p99 ms (a POST with nothing queued)",
            ms(alone["service"]["latency_ms"], "p50", "p99"), f"{ms(alone['bare']['latency_ms'], 'p50', 'p99')} (bare)",
            " / ".join(times(alone["service"]["latency_ms"][q], alone["bare"]["latency_ms"][q]) for q in ("p50", "p99")),
            "p50 <= 1.1x of bare",
            verdict(alone["service"]["latency_ms"]["p50"] <= 1.1 * alone["bare"]["latency_ms"]["p50"])),
        *membership_rows(r),
    ]


def membership_rows(r: dict) -> list[Row]:
    """Issue 11: a post into a chat with 1,000 members costs the same as into a chat of 1 (its poster, the owner)."""
    members = r.get("members")
    if not members:
        return []
    crowd, service = members["service"], r["service"]
    crowd_alone, alone = members["one_client"], r["one_client"]["service"]
    count = f"{members['members_per_chat']:,}"
    name = f"1 ingest, chats of {count} members"
    queries = members["queries_per_post"]
    crowd_queries, one_queries = queries[f"{members['members_per_chat']}_members"], queries["1_member"]
    return [
        Row(f"{name}, {r['clients']} clients", "POST /api/chats/{id}/messages/ requests/s (the owner posts)",
            number(crowd["requests_per_s"]), f"{number(service['requests_per_s'])} (chats of 1 member, same rounds)",
            percent(members["ratio"]), ">= 95 % (issue 11: same cost)",
            verdict(members["ratio"] is not None and members["ratio"] >= 0.95)),
        Row(f"{name}, 1 client alone", "latency p50 / p99 ms (a POST with nothing queued)",
            ms(crowd_alone["latency_ms"], "p50", "p99"), f"{ms(alone['latency_ms'], 'p50', 'p99')} (chat of 1 member)",
            " / ".join(times(crowd_alone["latency_ms"][q], alone["latency_ms"][q]) for q in ("p50", "p99"))),
        Row(name, "database queries of one post (the mediator's transaction)", str(crowd_queries),
            f"{one_queries} (chat of 1 member)", "-", "issue 11: no more", verdict(crowd_queries <= one_queries)),
    ]


def relay_rows(r: dict) -> list[Row]:
    return [Row("2 relay", f"{r['events']:,} outbox events -> Kafka, events/s", number(r["relay"]["events_per_s"]),
                f"{number(r['raw']['events_per_s'])} (raw kafka-python, same records and settings)",
                percent(r["ratio"]), ">= 50 % of raw", verdict(r["ratio"] >= 0.50))]


def latency_rows(r: dict) -> list[Row]:
    """Targets of issue 13: at 50 msg/s p99 POST -> frame <= 100 ms, 0 lost, 0 duplicates; at 5 msg/s commit ->
    frame p50 <= 8 ms, p99 <= 20 ms."""
    rows = []
    for run in r["runs"]:
        name = f"3 end-to-end, {run['rate']:g} msg/s ({number(run['achieved_rate'])} achieved), {run['subscribers']} subscribers"
        latency, http = run["latency_ms"], run["http_latency_ms"]
        targeted = run["rate"] == 50
        met = latency["p99"] is not None and latency["p99"] <= 100
        rows += [
            Row(name, "POST -> frame p50 / p95 / p99 ms", ms(latency, "p50", "p95", "p99"),
                f"{ms(http, 'p50', 'p95', 'p99')} (the POST's own response)",
                " / ".join(times(latency[q], http[q]) for q in ("p50", "p99")),
                "p99 <= 100" if targeted else "-", verdict(met) if targeted else "-"),
            Row(name, f"lost / duplicates of {run['frames_expected']:,} frames", f"{run['lost']:,} / {run['duplicates']:,}",
                "-", "-", "0 / 0" if targeted else "-",
                verdict(run["lost"] == run["duplicates"] == 0) if targeted else "-"),
        ]
        commit = run.get("commit_to_frame_ms")
        if commit and commit["p50"] is not None:
            floor = run["rate"] == 5
            rows.append(Row(name, "commit -> frame p50 / p95 / p99 ms (from the message's created_at)",
                            ms(commit, "p50", "p95", "p99"), "-", "-", "p50 <= 8, p99 <= 20" if floor else "-",
                            verdict(commit["p50"] <= 8 and commit["p99"] <= 20) if floor else "-"))
        clients = run.get("clients")
        if clients:
            cpu, lag = clients["cpu_percent"], clients["loop_lag_ms"]
            rows.append(Row(name, "the bench's clients: CPU % of one core (subscribers / poster); their loops' lag p99 ms",
                            f"{cpu['subscribers']:.0f} ({clients['processes']['subscribers']} processes) / "
                            f"{cpu['poster']:.0f}; lag {number(lag['subscribers_p99'], 1)} / {number(lag['poster_p99'], 1)}",
                            "-", "-"))
    return rows


def typing_rows(r: dict | None) -> list[Row]:
    """Issue 12: a typing burst of 100 users in one chat must not slow message delivery in it by more than 10 %."""
    if not r:
        return []
    without, burst, ratio = r["without"], r["with"], r["ratio"]
    name = (f"6 typing burst, {r['subscribers']} subscribers, {r['rate']:g} msg/s, "
            f"{r['rounds']} x {r['seconds']:g} s each way")
    met = all(ratio[q] is not None and ratio[q] <= 1.10 for q in ("p50", "p99"))
    return [
        Row(name, f"POST -> frame p50 / p99 ms while all {r['subscribers']} type (each every ~{r['typing_every_s']:g} s)",
            ms(burst["latency_ms"], "p50", "p99"), f"{ms(without['latency_ms'], 'p50', 'p99')} (no typing, same rounds)",
            " / ".join("-" if ratio[q] is None else f"{ratio[q]:.2f}x" for q in ("p50", "p99")),
            "<= 1.10x (issue 12)", verdict(met)),
        Row(name, "typing frames in / out per s during the burst (the web process's gate, then to the other sockets)",
            f"{number(burst['typing_frames_sent_per_s'])} in / {number(burst['typing_frames_received_per_s'])} out",
            "-", "-"),
        Row(name, f"lost / duplicates of {burst['frames_expected']:,} + {without['frames_expected']:,} frames "
                  "(with / without)",
            f"{burst['lost']:,} / {burst['duplicates']:,}", f"{without['lost']:,} / {without['duplicates']:,} (without)",
            "-", "0 / 0", verdict(burst["lost"] == burst["duplicates"] == without["lost"] == without["duplicates"] == 0)),
    ]


def resume_rows(r: dict) -> list[Row]:
    """Issue 13, target 7: replaying 10,000 messages to one reconnecting client within 2x of reading them from the
    database and writing them to a raw socket (the baseline, in the bench's process)."""
    base, name = r["baseline"], f"7 resume, {r['messages']:,} messages to one client (median of {r['rounds']})"
    baseline = (f"{base['seconds']:.2f} s, {number(base['messages_per_s'])} msgs/s (ORM pages of {r['replay_page']}, "
                "rendered, written to a raw loopback socket a frame at a time)")
    rows = []
    for kind, figure in (("frames", "after_version=0, one websocket message per frame: s, msgs/s"),
                         ("batch", "after_version=0&batch=1, frames in batches: s, msgs/s")):
        run = r[kind]
        rows.append(Row(name, figure, f"{run['seconds']:.2f} s, {number(run['messages_per_s'])} msgs/s "
                                      f"({run['websocket_messages']:,} websocket messages)",
                        baseline, f"{r['ratio'][kind]:.2f}x", f"<= {r['target']:g}x (issue 13)", verdict(r["met"][kind])))
    paged = r["baseline_paged"]
    rows.append(Row(name, "batch=1 against the raw socket written a page at a time (one sendall per page, no target)",
                    f"{r['batch']['seconds']:.2f} s", f"{paged['seconds']:.2f} s, {number(paged['messages_per_s'])} msgs/s "
                    "(the same read, one write per page)", f"{r['ratio']['batch_to_paged']:.2f}x"))
    frames, batch = r["frames"], r["batch"]
    saturated = [kind for kind, full in r["client_saturated"].items() if full]
    rows.append(Row(name, "CPU % of one core, one frame / batch: the client (the bench's loop); web",
                    f"client {frames['cpu_percent']['bench']:.0f} / {batch['cpu_percent']['bench']:.0f}; "
                    f"web {frames['cpu_percent']['web']:.0f} / {batch['cpu_percent']['web']:.0f}"
                    + (f" (the client saturated: {', '.join(saturated)})" if saturated else ""),
                    f"bench {base['cpu_percent']['bench']:.0f} (the baseline's reader and writer)", "-"))
    return rows


def fanout_rows(r: dict) -> list[Row]:
    service, bare, raw = r["service"], r["bare"], r["raw"]
    name = f"4 fan-out, {service['subscribers']:,} subscribers x {service['messages']} msgs"
    if service["subscribers"] < service["subscribers_wanted"]:
        name += f" (stepped down from {service['subscribers_wanted']:,})"
    return [
        Row(name, "frames delivered/s", number(service["delivered_per_s"]),
            f"{number(raw['delivered_per_s'])} (raw group_send, same layer and Redis)", percent(r["ratio"]),
            ">= 80 % of raw", verdict(r["ratio"] is not None and r["ratio"] >= 0.80)),
        Row(name, "frames delivered/s, against real sockets", number(service["delivered_per_s"]),
            f"{number(bare['delivered_per_s'])} (bare websocket fan-out: thinnest Channels consumer, same web "
            f"processes; itself {percent(r['bare_ratio_to_raw'])} of raw)", percent(r["ratio_to_bare"])),
        Row(name, "web CPU per delivered frame, µs (the service's includes its 20 POSTs)",
            number(service.get("web_cpu_us_per_frame"), 1),
            f"{number(bare.get('web_cpu_us_per_frame'), 1)} (bare websocket fan-out)",
            times(service.get("web_cpu_us_per_frame"), bare.get("web_cpu_us_per_frame")), "<= 1.2x of bare",
            verdict(bool(service.get("web_cpu_us_per_frame") and bare.get("web_cpu_us_per_frame"))
                    and service["web_cpu_us_per_frame"] <= 1.2 * bare["web_cpu_us_per_frame"])),
        *batched_fanout_rows(name, r.get("batched"), bare),
        Row(name, "delivery p50 / p99 ms, against real sockets", ms(service["latency_ms"], "p50", "p99"),
            f"{ms(bare['latency_ms'], 'p50', 'p99')} (bare websocket)",
            " / ".join(times(service["latency_ms"][q], bare["latency_ms"][q]) for q in ("p50", "p99"))),
        Row(name, "delivery p50 / p99 ms", ms(service["latency_ms"], "p50", "p99"),
            f"{number(raw['latency_p50_ms'], 1)} / {number(raw['latency_p99_ms'], 1)} (raw)",
            " / ".join(times(service["latency_ms"][q], raw[f"latency_{q}_ms"]) for q in ("p50", "p99"))),
        Row(name, "lost / duplicates", f"{service['lost']:,} / {service['duplicates']:,}",
            f"{raw['lost']:,} / {raw['duplicates']:,} (raw)", "-", "0 lost", verdict(service["lost"] == 0)),
        *([Row(name, "chat sockets that could not be opened (50 handshakes at a time, 30 s each), before stepping down",
               "; ".join(service["step_down"])[:400], "-", "-")] if service.get("step_down") else []),
    ]


def batched_fanout_rows(name: str, batched: dict | None, bare: dict) -> list[Row]:
    """The service again with ?batch=1 (as the bundled page connects), on new sockets."""
    if not batched:
        return []
    per_frame, bare_per_frame = batched.get("web_cpu_us_per_frame"), bare.get("web_cpu_us_per_frame")
    return [
        Row(name, "with ?batch=1: frames delivered/s; lost / duplicates",
            f"{number(batched['delivered_per_s'])}; {batched['lost']:,} / {batched['duplicates']:,}",
            f"{number(bare['delivered_per_s'])} (bare websocket fan-out)",
            percent(batched["delivered_per_s"] / bare["delivered_per_s"]
                    if batched["delivered_per_s"] and bare["delivered_per_s"] else None)),
        Row(name, "with ?batch=1: web CPU per delivered frame, µs", number(per_frame, 1),
            f"{number(bare_per_frame, 1)} (bare websocket fan-out)", times(per_frame, bare_per_frame),
            "<= 1.2x of bare", verdict(bool(per_frame and bare_per_frame) and per_frame <= 1.2 * bare_per_frame)),
    ]


def footprint_rows(r: dict) -> list[Row]:
    cpu = r["idle_cpu_percent"]
    infrastructure = [f"{name} {cpu[name]:.1f}" for name in ("kafka", "redis") if name in cpu]
    return [
        Row("5 footprint", f"web RSS per idle chat websocket (the second {r['sockets']} opened; the first: "
            f"{r['first_batch_chat_bytes_per_socket'] / 1024:,.1f} KiB chat, "
            f"{r['first_batch_bare_bytes_per_socket'] / 1024:,.1f} bare)",
            f"{r['chat_bytes_per_socket'] / 1024:,.1f} KiB",
            f"{r['bare_bytes_per_socket'] / 1024:,.1f} KiB (bare websocket, same web processes)",
            times(r["chat_bytes_per_socket"], r["bare_bytes_per_socket"]), "<= 1.3x of bare",
            verdict(r["chat_bytes_per_socket"] <= 1.3 * r["bare_bytes_per_socket"])),
        Row("5 footprint", f"idle CPU % of one core over {r['idle_seconds']:g} s: web / relay / forwarder",
            f"{cpu['web']:.1f} / {cpu['relay']:.1f} / {cpu['forwarder']:.1f}",
            f"{' / '.join(infrastructure)} (embedded servers, same window)" if infrastructure else "-", "-"),
        *idle_forwarder_rows(r),
    ]


def idle_forwarder_rows(r: dict) -> list[Row]:
    """Target 5: the idle forwarder at this stack's fetch wait (with the embedded broker, if embedded), and at
    500 ms, which is what a broker that honours fetch waits makes of an idle forwarder."""
    if "long_fetch_wait_idle_cpu_percent" not in r:
        return []
    cpu, long_wait = r["idle_cpu_percent"], r["long_fetch_wait_idle_cpu_percent"]
    with_broker = cpu["forwarder"] + cpu.get("kafka", 0.0)
    return [
        Row("5 footprint", f"idle forwarder{' + embedded broker' if 'kafka' in cpu else ''} at this stack's "
            f"{r['fetch_wait_ms']} ms fetch wait, % of one core", f"{with_broker:.1f}", "-", "-",
            "<= 2 % (embedded)", verdict(with_broker <= 2.0)),
        Row("5 footprint", f"idle forwarder at a {r['long_fetch_wait_ms']} ms fetch wait (an idle fetch is held "
            "for the whole wait by any broker), % of one core", f"{long_wait['forwarder']:.1f}",
            f"broker {long_wait['kafka']:.1f}" if "kafka" in long_wait else "-", "-",
            "<= 1 %", verdict(long_wait["forwarder"] <= 1.0)),
    ]


SCENARIO_TITLES = {"ingest": "1 ingest", "relay": "2 relay", "latency": "3 end-to-end", "fanout": "4 fan-out",
                   "footprint": "5 footprint", "typing": "6 typing burst",
                   "resume": "7 resume"}


def rows(results: dict) -> list[Row]:
    """Every scenario's rows; one that broke (bench/run.py records its error) is one row saying so."""
    found = []
    for name, make in (("ingest", ingest_rows), ("relay", relay_rows), ("latency", latency_rows),
                       ("typing", typing_rows), ("resume", resume_rows), ("fanout", fanout_rows),
                       ("footprint", footprint_rows)):
        result = results.get(name)
        if result and "error" in result:
            found.append(Row(SCENARIO_TITLES[name], "the scenario broke", result["error"][:300], "-", "-", "runs",
                             "**missed**"))
        elif result:
            found += make(result)
    return found


def cpu_table(results: dict) -> str:
    """CPU per process during each loaded phase: who was busy (100 = one core; the machine has nproc x 100)."""
    ran = {name: result for name, result in results.items() if result and "error" not in result}
    phases = {}
    if ingest := ran.get("ingest"):
        phases["1 ingest (bare)"] = ingest["bare"]["cpu_percent"]
        phases["1 ingest (service)"] = ingest["service"]["cpu_percent"]
        if members := ingest.get("members"):
            phases[f"1 ingest (service, chats of {members['members_per_chat']:,} members)"] = members["service"]["cpu_percent"]
    if latency := ran.get("latency"):
        phases.update({f"3 end-to-end {run['rate']:g} msg/s": run["cpu_percent"] for run in latency["runs"]})
    if typing := ran.get("typing"):
        phases["6 typing burst: without (mean of rounds)"] = typing["without"]["cpu_percent"]
        phases["6 typing burst: with (mean of rounds)"] = typing["with"]["cpu_percent"]
    if resume := ran.get("resume"):
        phases["7 resume: baseline (median run)"] = resume["baseline"]["cpu_percent"]
        phases["7 resume: one frame per message (median run)"] = resume["frames"]["cpu_percent"]
        phases["7 resume: batch=1 (median run)"] = resume["batch"]["cpu_percent"]
    if fanout := ran.get("fanout"):
        phases["4 fan-out"] = fanout["service"]["cpu_percent"]
        if "batched" in fanout:
            phases["4 fan-out (batch=1)"] = fanout["batched"]["cpu_percent"]
        phases["4 fan-out (bare websocket)"] = fanout["bare"]["cpu_percent"]
    names = list(dict.fromkeys(name for cpu in phases.values() for name in cpu))  # "subscribers", "poster": scenario 3's client processes
    lines = ["| phase | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {phase} | " + " | ".join(f"{cpu[name]:.0f}" if name in cpu else "-" for name in names) + " |"
              for phase, cpu in phases.items()]
    return "\n".join(lines)


def markdown(results: dict, machine: dict) -> str:
    header = "| scenario | figure | measured | baseline (same run) | ratio | target | verdict |"
    lines = [header, "|---" * 7 + "|"]
    lines += [f"| {r.scenario} | {r.figure} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | {r.verdict} |"
              for r in rows(results)]
    facts = ", ".join(f"{key} {value}" for key, value in machine.items())
    return "\n".join([
        f"# make bench, {machine['date']}", "", facts, "", *lines, "",
        "CPU during each phase, % of one core:", "", cpu_table(results), "",
    ])


def machine_facts(stack: Stack) -> dict:
    embedded = {server.name for server in stack.embedded}
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    redis_version = client.info("server")["redis_version"]
    client.close()
    database_version = ".".join(map(str, connection.get_database_version()))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_speed": cpu_speed(),
        "web_processes": stack.web_processes,
        "python": platform.python_version(),
        "database": f"{connection.vendor} {database_version} ({stack.database})",
        "kafka": "embedded Tansu" if "kafka" in embedded else stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        "redis": f"{'embedded ' if 'redis' in embedded else ''}redis-server {redis_version}",
        "django": version("django"),
        "channels": version("channels"),
        "daphne": version("daphne"),
        "kafka-python": version("kafka-python"),
    }


def cpu_speed() -> str:
    """How fast this machine's Python is right now (shared machines vary from day to day): the time of a
    fixed pure-Python loop, best of three. Absolute figures of two runs compare only at similar speeds."""
    best = min(timeit.repeat("for i in range(1_000_000): s += i", "s = 0", number=1, repeat=3))
    return f"1M-addition loop {best * 1000:.0f} ms"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write(results: dict, machine: dict, run_seconds: float) -> str:
    text = markdown(results, machine) + f"\n`make bench` ran for {run_seconds:.0f} s.\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text)
    (RESULTS / "latest.json").write_text(json.dumps(
        {"machine": machine, "run_seconds": round(run_seconds, 1), "rows": [asdict(r) for r in rows(results)],
         "results": results}, indent=2))
    return text
