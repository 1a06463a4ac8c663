"""The system under test, started the way production runs it: real processes on real servers.

Kafka and Redis are the embedded ones (chats.runtime.embedded) unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set.
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
import signal
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
from typing import ClassVar

import psutil

from chats.runtime.embedded import (
    EmbeddedServer,
    environment_with_embedded_services,
    free_port,
)
from chats.runtime.processes import default_web_processes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0  # seconds for a process to become ready (the forwarder joins its group in ~3 s)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Process:
    """One process of the service, its output going to a log file (a restart appends to the same log)."""

    name: str
    popen: subprocess.Popen
    log: Path
    argv: list[str] = field(default_factory=list)
    log_offset: int = 0  # where this run of the process starts in the log

    def output(self) -> str:
        """What this run of the process wrote (the whole log for a process never restarted)."""
        with open(self.log, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no cleanup runs."""
        self.signal(signal.SIGKILL)
        self.popen.wait()

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
    web_processes: int | None = None  # None: as many as `make run` starts (chats.runtime.worker_loop.default_web_processes)
    processes: dict[str, Process] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def create(cls, settings_module: str = "bench.settings", extra_env: dict[str, str] | None = None,
               prefix: str = "bench") -> Iterator[Stack]:
        """Kafka, Redis and a bench database; the service's processes start with `start_service()`.
        `settings_module` and `extra_env` let another harness (bench/chaos) run the production settings."""
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
                DJANGO_SETTINGS_MODULE=settings_module,
                KAFKA_TOPIC=f"{prefix}-events-{run}",
                KAFKA_FORWARDER_GROUP=f"{prefix}-forwarder-{run}",
                LOG_LEVEL="INFO",
                PYTHONUNBUFFERED="1",
                **(extra_env or {}),
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
        if self.web_processes is None:
            self.web_processes = default_web_processes()  # Django is set up on the bench database by now
        webs = [self._spawn(f"web.{n}", self.command_for("web")) for n in range(1, self.web_processes + 1)]
        relay = self._spawn("relay", self.command_for("relay"))
        forwarder = self._spawn("forwarder", self.command_for("forwarder"))
        for web in webs:
            self.wait_ready(web)
        self._wait_ready(webs[0], self._healthy, "daphne to answer /api/health/")
        self.wait_ready(relay)
        self.wait_ready(forwarder)

    def command_for(self, role: str) -> list[str]:
        python = sys.executable
        return {
            "web": [python, "manage.py", "serve", "--port", str(self.port)],
            "relay": [python, "manage.py", "relay_outbox"],
            "forwarder": [python, "manage.py", "forward_events"],
        }[role]

    READY_LINES: ClassVar[dict[str, str]] = {"web": "Listening on TCP address", "relay": "connected to Kafka", "forwarder": "partitions assigned"}

    def wait_ready(self, process: Process) -> None:
        """Until this run of `process` logged that it is ready (daphne listens, the relay reached Kafka, the
        forwarder joined its group)."""
        line = self.READY_LINES[process.name.split(".")[0]]
        self._wait_ready(process, lambda: line in process.output(), f"{process.name} to log {line!r}")

    def spawn(self, name: str, role: str | None = None, wait: bool = True) -> Process:
        """Starts (or restarts, after a kill) the process `name` (`web.2`, `relay`, `relay.2`...), its output
        appended to its log."""
        old = self.processes.get(name)
        if old is not None and old.alive():
            raise RuntimeError(f"{name} is still running (pid {old.popen.pid})")
        process = self._spawn(name, old.argv if old else self.command_for(role or name.split(".")[0]))
        if wait:
            self.wait_ready(process)
        return process

    @contextmanager
    def restarted_with(self, name: str, **env: str) -> Iterator[Process]:
        """The process `name` restarted with `env` added to its environment for the block, then restarted as it
        was (bench/fetch_wait.py and the footprint try the forwarder's fetch wait this way)."""
        saved = {key: self.env.get(key) for key in env}
        self.processes[name].stop()
        self.env.update(env)
        try:
            yield self.spawn(name)
        finally:
            self.processes[name].stop()
            for key, value in saved.items():
                if value is None:
                    self.env.pop(key, None)
                else:
                    self.env[key] = value
            self.spawn(name)

    def embedded_server(self, name: str) -> EmbeddedServer:
        return next(server for server in self.embedded if server.name == name)

    def restart_redis(self, timeout: float = 10) -> EmbeddedServer:
        """Starts the embedded redis-server again on the port it had (after a kill): clients configured with
        REDIS_URL find it where it was, empty."""
        from chats.runtime.embedded import start_redis

        old = self.embedded_server("redis")
        if old.process.poll() is None:
            raise RuntimeError("redis is still running")
        old.stop()  # the process is gone; this removes its directory
        new = start_redis(port=old.port, timeout=timeout)
        self.embedded[self.embedded.index(old)] = new
        return new

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
        with open(log, "ab") as out:
            offset = out.tell()
            popen = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.processes[name] = Process(name, popen, log, argv, offset)
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


class CpuUsage(dict):
    """Each role's CPU over a block in % of one core; `seconds`, the block's length."""

    seconds = 0.0

    def cpu_seconds(self, role: str) -> float:
        return self[role] / 100 * self.seconds


@contextmanager
def cpu_usage(pids: dict[str, list[int]]) -> Iterator[CpuUsage]:
    """Fills the yielded dict, on exit, with each role's CPU over the block in % of one core (summed over
    its processes)."""
    usage = CpuUsage()
    processes = {name: [psutil.Process(pid) for pid in group] for name, group in pids.items()}
    before = {name: _cpu_seconds(group) for name, group in processes.items()}
    started = time.monotonic()
    yield usage
    elapsed = usage.seconds = time.monotonic() - started
    for name, group in processes.items():
        usage[name] = round(100 * (_cpu_seconds(group) - before[name]) / elapsed, 1)


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(times.user + times.system for times in (process.cpu_times() for process in processes))
