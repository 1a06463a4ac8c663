"""The end-to-end scenario's clients, each in a process of its own: subscriber processes (websockets) and one
poster process (HTTP), driven by the bench over their stdin and stdout, one JSON object a line.

Why processes: in one asyncio loop, 100 receivers, JSON parsing, timestamps and the paced POSTs share one
core with each other; a late loop would delay both the POSTs and the receive times, and the bench would
measure itself. Split, each process has its own core time (their CPU and their loop's lateness are reported
with the results), and every timestamp is `time.monotonic()`, which on Linux is CLOCK_MONOTONIC: one clock for
every process of the machine, so a frame's receive time minus its POST's send time needs no clock sync.

    python -m bench.scenarios.latency_clients subscribe   # first line: {"urls": [...]}; then commands
    python -m bench.scenarios.latency_clients post        # first line: {"host", "port", "token", "connections"}

Commands: {"cmd": "reset"} (forget what arrived), {"cmd": "wait", "messages", "idle", "cap"} (until every
subscriber has that many seqs; replies with what arrived), {"cmd": "typing", "every": s or null} (every
subscriber sends {"type": "typing"} every `every` s, until null), {"cmd": "post", "path", "payloads", "rate"}
(replies with every response), {"cmd": "close"}. Every reply is one line; the first is {"ready": pid}.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as `python -m`: import `bench` from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.httpclient import Connection, post_paced
from bench.wsclient import Audience, LoopLag

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


async def read_line() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        return {"cmd": "close"}
    return json.loads(line)


def reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def subscribe() -> None:
    config = await read_line()
    audience = await Audience.connect(config["urls"])
    lag = LoopLag()
    reply({"ready": os.getpid()})
    try:
        while (command := await read_line())["cmd"] != "close":
            if command["cmd"] == "reset":
                audience.reset()
                lag.reset()
                reply({"ok": True})
            elif command["cmd"] == "typing":
                if command["every"]:
                    audience.start_typing(command["every"])
                else:
                    audience.stop_typing()
                reply({"ok": True})
            elif command["cmd"] == "wait":
                ended_by = await audience.wait_for(command["messages"], command["idle"], command["cap"])
                reply({"ended_by": ended_by, "loop_lag_ms": lag.summary(),
                       "subscribers": [subscriber.to_json() for subscriber in audience.subscribers]})
    finally:
        lag.stop()
        await audience.close()
        reply({"closed": True})


async def post() -> None:
    config = await read_line()
    connections = [Connection(config["host"], config["port"], config["token"]) for _ in range(config["connections"])]
    lag = LoopLag()
    reply({"ready": os.getpid()})
    try:
        while (command := await read_line())["cmd"] != "close":
            lag.reset()
            posts = await post_paced(connections[:command.get("connections", len(connections))], command["path"],
                                     command["payloads"], command["rate"])
            reply({
                "responses": [[r.status, r.json().get("seq") if r.status == 201 else None, r.sent_at, r.seconds]
                              for r in posts.responses],
                "behind_schedule_max_ms": posts.behind_schedule_max_ms,
                "loop_lag_ms": lag.summary(),
            })
    finally:
        lag.stop()
        await asyncio.gather(*(connection.close() for connection in connections))
        reply({"closed": True})


class ClientProcess:
    """The bench's end of one client process."""

    def __init__(self, role: str, config: dict[str, Any]) -> None:
        self.role = role
        self.popen = subprocess.Popen([sys.executable, "-m", "bench.scenarios.latency_clients", role], cwd=PROJECT_ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.send(config)
        self.pid = self.receive()["ready"]

    def send(self, data: dict[str, Any]) -> None:
        self.popen.stdin.write(json.dumps(data) + "\n")
        self.popen.stdin.flush()

    def receive(self) -> dict[str, Any]:
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.role} client process exited with {self.popen.wait()}")
        return json.loads(line)

    def call(self, data: dict[str, Any]) -> dict[str, Any]:
        self.send(data)
        return self.receive()

    def close(self) -> None:
        if self.popen.poll() is None:
            try:
                self.call({"cmd": "close"})
                self.popen.wait(timeout=15)
            except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait()


if __name__ == "__main__":
    asyncio.run({"subscribe": subscribe, "post": post}[sys.argv[1]]())
