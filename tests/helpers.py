"""Plain helpers for the tests that drive real processes (the broker, workers)."""

import json
import time
import urllib.request
from typing import Any
from urllib.error import HTTPError

from django.db import connection
from kafka import KafkaConsumer, TopicPartition


def read_topic(servers: str, topic: str, at_least: int, timeout: float = 20.0) -> list:
    """Every record on the topic from the start, waiting until there are `at_least` (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= at_least:
                # One more short poll, so a duplicate right behind the last record is seen too.
                for batch in consumer.poll(timeout_ms=300).values():
                    records.extend(batch)
                break
        return records
    finally:
        consumer.close()


def envelopes_of(records) -> list[dict]:
    return [json.loads(record.value) for record in records]


def database_url() -> str:
    """The URL of the database this test runs on (the test database), for worker subprocesses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(base_url: str, method: str, path: str, body: dict | None = None, token: str | None = None,
              timeout: float = 30) -> tuple[int, Any]:
    """One request to a running server, as an outside client; the status and the decoded JSON (None if empty)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data, headers, method=method)
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def started(worker, ready, what: str):
    """Waits until `ready()` while the process keeps running; fails with its output if it exits."""
    wait_until(lambda: ready() or worker.process.poll() is not None, timeout=60, message=what)
    assert worker.process.poll() is None, f"{what}: the process exited\n{worker.output()}"
    return worker


def serving(worker, port: int, *args: str, **env: str):
    """`manage.py serve` on `port` (as `runstack` starts it), once daphne listens; several may share a port."""
    web = worker("serve", "--port", str(port), *args, **env)
    return started(web, lambda: "Listening on TCP address" in web.output(), f"daphne to listen on {port}")
