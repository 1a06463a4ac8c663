"""Pass/fail per scenario against the expectations, and the table (bench/chaos/results/latest.md + .json)."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def judge(result: dict) -> list[str]:
    """Every expectation the scenario missed, in words (empty: it passed)."""
    failures = []

    def expect(condition: bool, text: str) -> None:
        if not condition:
            failures.append(text)

    expect(result["subscribers_connected"] == result["subscribers"],
           f"only {result['subscribers_connected']} of {result['subscribers']} subscribers connected at the start")
    expect(result["posts_succeeded"] == result["posts_attempted"],
           f"{result['posts_attempted'] - result['posts_succeeded']} posts never succeeded {dict(result['posts_failed'])}")
    expect(result["http_5xx"] == 0, f"{result['http_5xx']} 5xx responses to posts ({result['posts_with_5xx']} posts)")
    expect(result["lost"] == 0, f"lost {result['lost']} deliveries ({result['lost_messages']} messages, "
                                f"{result['subscribers_incomplete']} subscribers incomplete)")
    expect(result["ws_duplicates"] == 0, f"{result['ws_duplicates']} websocket duplicates")
    expect(result["order_violations"] == 0, f"{result['order_violations']} order violations")
    expect(result["gaps_after_resume"] == 0, f"{result['gaps_after_resume']} gaps after resume")
    expect(result["text_mismatch"] == 0 and result["post_text_mismatch"] == 0,
           f"texts differ: {result['text_mismatch']} received, {result['post_text_mismatch']} stored/returned")
    expect(result["seq_given_twice"] == 0, f"{result['seq_given_twice']} seqs acknowledged to two posts")
    if "kafka_duplicates" in result:
        expect(result["kafka_duplicates"] <= result["kafka_dup_allowed"],
               f"{result['kafka_duplicates']} Kafka duplicates, more than {result['kafka_dup_allowed']} "
               f"(one batch per relay kill{' or failed batch' if result.get('relay_retries') else ''})")
        expect(result["kafka_missing"] == 0, f"{result['kafka_missing']} committed messages have no event in Kafka")
        expect(result["kafka_order_violations"] == 0, f"{result['kafka_order_violations']} seqs out of order in Kafka")
    for fault in result["faults"]:
        if "recovery_s" in fault and not fault.get("unmeasured"):
            expect(fault["recovery_s"] is not None, f"never recovered from {fault['fault']}")
    for exit_ in result["unexpected_exits"]:
        failures.append(f"{exit_['process']} exited on its own (code {exit_['returncode']}) at {exit_['at_s']}s")
    return failures


def _closes(closes: dict) -> str:
    shown = [f"{code}×{n}" for code, n in closes.items() if code not in ("1000",)]
    return ", ".join(shown[:5]) or "-"


def table(results: list[dict]) -> str:
    head = ("| scenario | posts ok/attempted | 5xx | lost (msgs) | ws dup | order violations | gaps after resume "
            "| kafka dup (allowed) | recovery s | closes seen | result |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in results:
        recovery = "-" if not r["faults"] or "recovery_s" not in r["faults"][0] else (
            "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}")
        if r.get("drain_s") is not None or "drain_s" in r:
            recovery += f" (drain {r['drain_s']:.1f})" if r.get("drain_s") is not None else " (drain never)"
        kafka = f"{r.get('kafka_duplicates', '?')} ({r['kafka_dup_allowed']})"
        rows.append(
            f"| {r['name']} | {r['posts_succeeded']}/{r['posts_attempted']} | {r['http_5xx']} "
            f"| {r['lost']} ({r['lost_messages']}) | {r['ws_duplicates']} | {r['order_violations']} "
            f"| {r['gaps_after_resume']} | {kafka} | {recovery} | {_closes(r['closes'])} "
            f"| {'pass' if r['passed'] else '**FAIL**'} |"
        )
    return head + "\n".join(rows) + "\n"


def markdown(run: dict) -> str:
    lines = [
        f"# make chaos: profile {run['profile']}",
        "",
        f"{run['finished_at']}, {run['seconds']:.0f} s, database {run['database']}, {run['web_processes']} web "
        f"processes, Kafka {run['kafka']}, Redis {run['redis']}, {run['machine']}.",
        "",
        table(run["scenarios"]),
        "lost = subscriber deliveries missing at the end (distinct messages); recovery = fault end -> the first post "
        "sent after it reached every subscriber of its chat (the slowest fault of the scenario); closes: close "
        "codes the clients saw (1006 = the connection dropped), then reconnected with after_seq.",
        "",
    ]
    for r in run["scenarios"]:
        lines.append(f"## {r['name']}: {r['title']} — {'pass' if r['passed'] else 'FAIL'}")
        lines.append("")
        lines.append(f"- {r['subscribers']} subscribers on {len(r['chat_ids'])} chats; {r['posts_attempted']} posts at "
                     f"{r['rate']:g}/s ({r['max_size_posts']} of 4,096 characters), posted in {r['posting_s']} s; "
                     f"after the posts: {r['ended_by']} in {r['waited_after_posts_s']} s; client CPU "
                     f"{r['client_cpu_percent']} % of a core")
        lines.append(f"- posts: statuses {r['http_statuses']}, retries {r['post_retries']}, connection errors "
                     f"{dict(r['post_connection_errors'])}, slowest {r['post_latency_max_s']} s")
        lines.append(f"- sockets opened {r['sockets_opened']}; closes {r['closes']}; error frames {r['error_frames']}; "
                     f"gaps on first sockets {r['gaps_live']}")
        if "kafka_records" in r:
            lines.append(f"- Kafka: {r['kafka_records']} records, {r['kafka_duplicates']} repeats, {r['kafka_missing']} "
                         f"missing, {r['kafka_order_violations']} out of order; relay kills {r['relay_kills']}, "
                         f"failed batches logged {r['relay_retries']}")
        for fault in r["faults"]:
            recovered = fault.get("recovery_s")
            lines.append(f"- fault: {fault['fault']}" + (f"; recovered in {recovered} s" if recovered is not None
                                                          else "; never recovered" if "recovery_s" in fault else "")
                         + (f" ({fault['note']})" if fault.get("note") else ""))
        for failure in r["failures"]:
            lines.append(f"- **failed:** {failure}")
        for exit_ in r["unexpected_exits"]:
            lines.append(f"- {exit_['process']} exited: " + " / ".join(exit_["last_lines"][-3:])[:600])
        for note in r["notes"]:
            lines.append(f"- note: {note}")
        if r["evidence"]:
            lines.append("- log lines (count × line):")
            for process, found in r["evidence"].items():
                for line, count in list(found.items())[:6]:
                    lines.append(f"  - {process}: {count} × `{line[:220]}`")
        lines.append("")
    return "\n".join(lines)


def write(run: dict) -> str:
    """latest.{json,md}, and the same as <profile>-<database>.{json,md}, so CI's SQLite run is kept beside
    its PostgreSQL run."""
    RESULTS.mkdir(exist_ok=True)
    data = json.dumps(run, indent=2, default=_json) + "\n"
    text = markdown(run)
    database = "postgresql" if run["database"].startswith("PostgreSQL") else "sqlite"
    for name in ("latest", f"{run['profile']}-{database}"):
        (RESULTS / f"{name}.json").write_text(data)
        (RESULTS / f"{name}.md").write_text(text)
    return text


def _json(value):
    if isinstance(value, set):
        return sorted(value)
    return str(value)


def machine() -> str:
    import os

    return f"{os.cpu_count()} cores, Python {platform.python_version()}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
