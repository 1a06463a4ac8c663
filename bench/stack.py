"""The system under test, started the way production runs it: real processes on real servers.

Kafka and Redis are the embedded ones (chats.embedded) unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set.
The database is a fresh SQLite file in a temporary directory unless DATABASE_URL is set, so the bench never
touches the developer's db.sqlite3. The topic and the forwarder's consumer group are new for every run, so
a shared broker holds nothing from earlier runs. daphne, relay_outbox and forward_events run with
DJANGO_SETTINGS_MODULE=bench.settings (the service plus the bare endpoint), each in its own session, so a
Ctrl-C reaches only this orchestrator, which then stops them in order; `Stack` is a context manager and
stops everything, embedded servers included, however the run ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from chats.embedded import EmbeddedServer, environment_with_embedded_services, free_port
from chats.workers import default_web_processes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0  # seconds for a process to become ready (the forwarder joins its group in ~3 s)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Process:
    """One process of the service, its output going to a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    embedded: list[EmbeddedServer]
    database: str  # what the report says about the database
    port: int = field(default_factory=free_port)
    web_processes: int | None = None  # None: as many as `make run` starts (chats.workers.default_web_processes)
    processes: dict[str, Process] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def create(cls) -> Iterator[Stack]:
        """Kafka, Redis and a bench database; the service's processes start with `start_service()`."""
        workdir = Path(tempfile.mkdtemp(prefix="chat-bench-"))
        embedded: list[EmbeddedServer] = []
        try:
            env, embedded = environment_with_embedded_services()
            if env.get("DATABASE_URL"):
                database = "DATABASE_URL"
            else:
                env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
                database = "fresh SQLite file"
            run = uuid.uuid4().hex[:8]
            env.update(
                DJANGO_SETTINGS_MODULE="bench.settings",
                KAFKA_TOPIC=f"bench-events-{run}",
                KAFKA_FORWARDER_GROUP=f"bench-forwarder-{run}",
                LOG_LEVEL="INFO",
                PYTHONUNBUFFERED="1",
            )
            stack = cls(workdir, env, embedded, database)
            try:
                yield stack
            finally:
                stack.stop_service()
        finally:
            for server in embedded:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> str:
        """Runs `manage.py <args>` to completion on the bench settings; returns its output."""
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start_service(self) -> None:
        """`web_processes` x `manage.py serve` (daphne) sharing the port, relay_outbox and forward_events;
        returns once each is ready."""
        python = sys.executable
        if self.web_processes is None:
            self.web_processes = default_web_processes()  # Django is set up on the bench database by now
        webs = [self._spawn(f"web.{n}", [python, "manage.py", "serve", "--port", str(self.port)])
                for n in range(1, self.web_processes + 1)]
        relay = self._spawn("relay", [python, "manage.py", "relay_outbox"])
        forwarder = self._spawn("forwarder", [python, "manage.py", "forward_events"])
        for web in webs:
            self._wait_ready(web, lambda: "Listening on TCP address" in web.output(), "daphne to listen")
        self._wait_ready(webs[0], self._healthy, "daphne to answer /api/health/")
        self._wait_ready(relay, lambda: "connected to Kafka" in relay.output(), "the relay to connect to Kafka")
        self._wait_ready(forwarder, lambda: "partitions assigned" in forwarder.output(),
                         "the forwarder to join its consumer group")

    def stop_service(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    @property
    def web_pids(self) -> list[int]:
        return self.pids()["web"]

    def pids(self) -> dict[str, list[int]]:
        """Every process whose CPU the report shows, by role ("web" may be several daphne processes);
        "bench" is this process (the clients)."""
        pids: dict[str, list[int]] = {}
        for name, process in self.processes.items():
            pids.setdefault(name.split(".")[0], []).append(process.popen.pid)
        pids.update({server.name: [server.process.pid] for server in self.embedded})
        return {**pids, "bench": [os.getpid()]}

    def _spawn(self, name: str, argv: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    def _healthy(self) -> bool:
        try:
            with NO_PROXY.open(f"{self.base_url}/api/health/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    @staticmethod
    def _wait_ready(process: Process, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"waiting for {what}: {process.name} exited\n{process.output()[-3000:]}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {READY_TIMEOUT:.0f}s waiting for {what}\n{process.output()[-3000:]}")


@contextmanager
def cpu_usage(pids: dict[str, list[int]]) -> Iterator[dict[str, float]]:
    """Fills the yielded dict, on exit, with each role's CPU over the block in % of one core (summed over
    its processes)."""
    usage: dict[str, float] = {}
    processes = {name: [psutil.Process(pid) for pid in group] for name, group in pids.items()}
    before = {name: _cpu_seconds(group) for name, group in processes.items()}
    started = time.monotonic()
    yield usage
    elapsed = time.monotonic() - started
    for name, group in processes.items():
        usage[name] = round(100 * (_cpu_seconds(group) - before[name]) / elapsed, 1)


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(times.user + times.system for times in (process.cpu_times() for process in processes))
