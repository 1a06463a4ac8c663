"""Fixtures for the tiers that use Django and the database. `tests/domain/` uses none of them."""

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.models import OutboxEvent
from chats.runtime.embedded import (
    EMBEDDED_KAFKA_FETCH_MAX_WAIT_MS,
    EmbeddedServer,
    start_kafka,
    start_redis,
)
from tests.helpers import database_url


@pytest.fixture(autouse=True)
def _fast_password_hashing(request):
    # PBKDF2 is slow on purpose; the tests create hundreds of users and test no hashing.
    # Only tests with a database create users; the domain's tests stay free of Django.
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("settings").PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, and at the end every other session on the PostgreSQL test database ended first: the
    connection pool and the threads that borrowed from it keep connections open, and PostgreSQL drops no database
    still in use ("Error when trying to teardown test databases")."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def make_user(django_user_model):
    def make(username: str = "ann", *, is_staff: bool = False):
        return django_user_model.objects.create_user(username=username, password="s3cret-pass-word", is_staff=is_staff)

    return make


@pytest.fixture
def make_client():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def ann(make_user):
    return make_user("ann")


@pytest.fixture
def client(make_client, ann) -> APIClient:
    """An API client authenticated as ann, by token."""
    return make_client(ann)


@pytest.fixture
def outbox():
    """The outbox's envelopes, oldest first."""

    def read() -> list[dict]:
        return list(OutboxEvent.objects.order_by("id").values_list("envelope", flat=True))

    return read


# --- Real processes: the embedded Kafka broker, and workers run as subprocesses -------------------------


PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ExternalServer:
    address: str


@pytest.fixture(scope="session")
def kafka_broker():
    """KAFKA_BOOTSTRAP_SERVERS if set, else one embedded Tansu broker for the session.

    Tests isolate themselves with a topic each (the `kafka` fixture)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield ExternalServer(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    broker = start_kafka()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server():
    """REDIS_URL's server if set, else one embedded redis-server for the session."""
    if os.environ.get("REDIS_URL"):
        yield ExternalServer(os.environ["REDIS_URL"].split("//", 1)[1].split("/", 1)[0])
        return
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def channel_layer(redis_server, settings):
    """The production channel layer (Redis pub/sub) on the test Redis, as worker processes see it."""
    from channels.layers import get_channel_layer

    from chatproject.settings import channel_layers_on

    settings.REDIS_URL = f"redis://{redis_server.address}/0"
    settings.CHANNEL_LAYERS = channel_layers_on(settings.REDIS_URL)
    return get_channel_layer()


@pytest.fixture
def kafka(kafka_broker, settings):
    """Points the settings at the session broker and a fresh topic; returns the topic name."""
    from chats.pipeline.kafka_clients import ensure_topic

    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.address
    if isinstance(kafka_broker, EmbeddedServer) and "KAFKA_FETCH_MAX_WAIT_MS" not in os.environ:
        settings.KAFKA_FETCH_MAX_WAIT_MS = EMBEDDED_KAFKA_FETCH_MAX_WAIT_MS  # as `make run` sets it
    settings.KAFKA_TOPIC = f"chat-events-{uuid.uuid4().hex[:12]}"
    # A consumer group per test too: a forwarder of an earlier test, still a member of a shared group,
    # would hold up the next test's join for a session timeout.
    settings.KAFKA_FORWARDER_GROUP = f"forwarder-{settings.KAFKA_TOPIC}"
    ensure_topic(settings.KAFKA_TOPIC)
    return settings.KAFKA_TOPIC


class Worker:
    """A process of the service (a `manage.py` command) with its output going to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)


@pytest.fixture
def worker(settings, tmp_path):
    """Starts `manage.py <command>` as a real process on the test
    database, the test's Kafka topic and Redis; kills leftovers at teardown."""
    started: list[Worker] = []

    def start(command: str, *args: str, **extra_env: str) -> Worker:
        env = dict(
            os.environ,
            DATABASE_URL=database_url(),
            KAFKA_BOOTSTRAP_SERVERS=settings.KAFKA_BOOTSTRAP_SERVERS,
            KAFKA_TOPIC=settings.KAFKA_TOPIC,
            KAFKA_FORWARDER_GROUP=settings.KAFKA_FORWARDER_GROUP,
            KAFKA_FETCH_MAX_WAIT_MS=str(settings.KAFKA_FETCH_MAX_WAIT_MS),
            REDIS_URL=settings.REDIS_URL,
            PYTHONUNBUFFERED="1",
            # Every test's server registers its users from 127.0.0.1, and the counters live in the session's
            # one Redis: the production limit (20 an hour) would refuse a late test's users. Tests of that
            # limit pass their own rate.
            CHAT_REGISTER_RATE="100000/hour",
        )
        env.update(extra_env)
        argv = [sys.executable, "manage.py", command, *args]
        started.append(Worker(argv, env, tmp_path / f"{command}-{len(started)}.log"))
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
        running.process.wait(timeout=10)
