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
    expect(result["changes_succeeded"] == result["changes_attempted"],
           f"{result['changes_attempted'] - result['changes_succeeded']} edits/deletions never succeeded "
           f"{result['changes_outcomes']}")
    expect(result["http_5xx"] == 0, f"{result['http_5xx']} 5xx responses ({result['posts_with_5xx']} posts, "
                                    f"{result['changes_with_5xx']} edits/deletions)")
    expect(result["lost"] == 0, f"lost {result['lost']} deliveries ({result['lost_messages']} messages, "
                                f"{result['subscribers_incomplete']} subscribers incomplete)")
    expect(result["stale"] == 0, f"{result['stale']} messages held at an older version than the database's (lost "
                                 f"edits or deletions; {result['stale_messages']} messages)")
    expect(result["phantom_messages"] == 0, f"{result['phantom_messages']} messages held that the database lacks")
    expect(result["members_mismatch"] == 0, f"{result['members_mismatch']} subscribers end with other members than "
                                            "the database's")
    expect(result["ws_duplicates"] == 0, f"{result['ws_duplicates']} websocket duplicates (a version or seq again)")
    expect(result["order_violations"] == 0, f"{result['order_violations']} order violations")
    expect(result["unknown_changes"] == 0, f"{result['unknown_changes']} edits/deletions of a message the client "
                                           "was never given")
    expect(result["version_mismatch"] == 0, f"{result['version_mismatch']} frames whose version is not their "
                                            "message's (or missing)")
    expect(result["stored_mismatch"] == 0, f"{result['stored_mismatch']} messages end in the database otherwise "
                                           "than the answered posts, edits and deletions say")
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
        expect(result["kafka_missing_versions"] == 0,
               f"{result['kafka_missing_versions']} chat versions (changes) have no event in Kafka")
        expect(result["kafka_version_order_violations"] == 0,
               f"{result['kafka_version_order_violations']} versions out of order in Kafka")
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
    head = ("| scenario | posts ok/attempted | edits+deletes ok/attempted | 5xx | lost (msgs) | stale (msgs) | ws dup "
            "| order violations | gaps after resume | kafka dup (allowed) | recovery s | closes seen | result |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in results:
        recovery = "-" if not r["faults"] or "recovery_s" not in r["faults"][0] else (
            "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}")
        if r.get("drain_s") is not None or "drain_s" in r:
            recovery += f" (drain {r['drain_s']:.1f})" if r.get("drain_s") is not None else " (drain never)"
        kafka = f"{r.get('kafka_duplicates', '?')} ({r['kafka_dup_allowed']})"
        rows.append(
            f"| {r['name']} | {r['posts_succeeded']}/{r['posts_attempted']} "
            f"| {r['changes_succeeded']}/{r['changes_attempted']} | {r['http_5xx']} "
            f"| {r['lost']} ({r['lost_messages']}) | {r['stale']} ({r['stale_messages']}) | {r['ws_duplicates']} "
            f"| {r['order_violations']} "
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
        "lost = subscriber deliveries missing at the end (distinct messages); stale = messages a subscriber holds "
        "at an older version than the database's: a lost edit or deletion (distinct messages); ws dup = a version "
        "(after_seq: a seq) received again; recovery = fault end -> the first post sent after it reached every "
        "subscriber of its chat (the slowest fault of the scenario); closes: close codes the clients saw (1006 = "
        "the connection dropped), then reconnected with after_version (one subscriber in five: after_seq).",
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
        lines.append(f"- edits and deletions: {r['changes_by_kind']} ({r['max_size_edits']} edits of 4,096 "
                     f"characters); outcomes {r['changes_outcomes']}; statuses {r['change_statuses']}, retries "
                     f"{r['change_retries']}; the database ends with {r['committed_messages']} messages "
                     f"({r['committed_deleted']} tombstones), chat versions summing to {r['chat_versions']}, every "
                     f"message as its answered changes say ({r['stored_mismatch']} otherwise)")
        lines.append(f"- subscribers {r['subscribers_by_protocol']}: after_version ones received "
                     f"{r['changes_received']}, skipped {r['versions_skipped']} superseded versions in replays; "
                     f"unknown changes {r['unknown_changes']}, version mismatches {r['version_mismatch']}, phantom "
                     f"messages {r['phantom_messages']}, members differing {r['members_mismatch']}")
        lines.append(f"- sockets opened {r['sockets_opened']}; closes {r['closes']}; error frames {r['error_frames']}; "
                     f"gaps on first sockets {r['gaps_live']}")
        if "kafka_records" in r:
            lines.append(f"- Kafka: {r['kafka_records']} records ({r['kafka_changes']} edits/deletions), "
                         f"{r['kafka_duplicates']} repeats, {r['kafka_missing']} messages and "
                         f"{r['kafka_missing_versions']} versions missing, {r['kafka_order_violations']} seqs and "
                         f"{r['kafka_version_order_violations']} versions out of order; relay kills {r['relay_kills']}, "
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
