"""`manage.py runstack` (what `make run` runs) stopped as an operator stops it: by Ctrl-C or SIGTERM."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from chats.runtime.embedded import (
    environment_with_embedded_services,
    free_port,
    port_open,
)
from tests.helpers import wait_until


@pytest.fixture
def fresh_environment(tmp_path) -> dict[str, str]:
    """A new SQLite database, migrated, and no Kafka or Redis configured: runstack embeds both."""
    env = {name: value for name, value in os.environ.items() if name not in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], env=env, check=True, capture_output=True)
    return env


def test_with_a_kafka_of_your_own_the_fetch_wait_is_left_to_the_setting_and_yours_is_kept():
    external = {"KAFKA_BOOTSTRAP_SERVERS": "kafka1:9092", "REDIS_URL": "redis://redis1:6379/0"}
    env, started = environment_with_embedded_services(external)
    assert started == [] and "KAFKA_FETCH_MAX_WAIT_MS" not in env  # the setting's default: kafka-python's 500
    env, started = environment_with_embedded_services({**external, "KAFKA_FETCH_MAX_WAIT_MS": "100"})
    assert env["KAFKA_FETCH_MAX_WAIT_MS"] == "100"


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stop_by_signal_exits_0_and_leaves_no_process_behind(fresh_environment, tmp_path, stop):
    port = free_port()
    with open(tmp_path / "runstack.log", "wb") as log:
        # A session of its own, as a terminal's foreground job is a process group of its own.
        runstack = subprocess.Popen(
            [sys.executable, "manage.py", "runstack", "--port", str(port)],
            env=fresh_environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until(lambda: port_open(port) or runstack.poll() is not None, timeout=90, message="the web port")
        assert runstack.poll() is None, (tmp_path / "runstack.log").read_text()
        children = psutil.Process(runstack.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        for part in ("serve", "relay_outbox", "forward_events", "tansu", "redis-server"):
            assert part in names, f"{part} is not running under runstack: {names}"
        forwarder = next(child for child in children if "forward_events" in child.cmdline())
        assert forwarder.environ()["KAFKA_FETCH_MAX_WAIT_MS"] == "20"  # the embedded broker holds every fetch

        if stop == "ctrl-c":
            os.killpg(runstack.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        else:
            runstack.send_signal(signal.SIGTERM)
        returncode = runstack.wait(timeout=60)
    finally:
        if runstack.poll() is None:
            runstack.kill()
            runstack.wait()

    assert returncode == 0, (tmp_path / "runstack.log").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [" ".join(process.cmdline()) for process in alive]
