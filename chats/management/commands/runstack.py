"""`manage.py runstack` (what `make run` runs): every process of the service under one supervisor.

Kafka and Redis are the embedded ones unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set. Ctrl-C (or
SIGTERM) stops the workers, the web server and the embedded servers, and exits 0; nothing is left behind.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from honcho.manager import SIGNALS, Manager
from honcho.printer import Printer

from chats.runtime.arguments import positive_int
from chats.runtime.embedded import environment_with_embedded_services, port_open
from chats.runtime.processes import default_web_processes


class Command(BaseCommand):
    help = "Run the web server and the workers, with embedded Kafka and Redis unless configured."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=positive_int, default=os.environ.get("PORT", "8000"))
        parser.add_argument(
            "--web-processes", type=positive_int, default=None,
            help="daphne processes sharing the port (default WEB_CONCURRENCY, else one per core on PostgreSQL "
                 "and one on SQLite, which takes one writer at a time)",
        )

    def handle(self, *args, port, web_processes, **options):
        try:
            web_processes = web_processes or default_web_processes()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        env, embedded = environment_with_embedded_services()
        python = sys.executable
        manager = Manager(Printer(sys.stdout))
        for number in range(1, web_processes + 1):
            manager.add_process(f"web.{number}", f"{python} manage.py serve --port {port}", env=env)
        manager.add_process("relay", f"{python} manage.py relay_outbox", env=env)
        manager.add_process("forwarder", f"{python} manage.py forward_events", env=env)
        names = {server.name: server.address for server in embedded}
        kafka = env["KAFKA_BOOTSTRAP_SERVERS"] + (" (embedded Tansu)" if "kafka" in names else "")
        redis = env["REDIS_URL"] + (" (embedded redis-server)" if "redis" in names else "")

        def announce_when_ready() -> None:
            deadline = time.monotonic() + 60
            while not port_open(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            base = f"http://127.0.0.1:{port}"
            sys.stdout.write(
                f"\nready: API {base}/api/  websockets ws://127.0.0.1:{port}/ws/chats/  browsable API login {base}/api-auth/login/  admin {base}/admin/  "
                f"schema {base}/api/schema/  health {base}/api/health/\n"
                f"       Kafka {kafka}  Redis {redis}  topic {env.get('KAFKA_TOPIC', 'chat-events')}\n"
                "       Ctrl-C stops everything.\n\n"
            )
            sys.stdout.flush()

        threading.Thread(target=announce_when_ready, daemon=True).start()
        try:
            manager.loop()
        finally:
            for server in embedded:
                server.stop()
        # honcho answers a stop by Ctrl-C or SIGTERM with 130 / 143, as a shell would for a killed job; here it
        # is the normal end, once every process has stopped, and `make run` must not report it as an error.
        # A process that stopped on its own first still ends runstack with that process's code.
        stopped_by_signal = manager.returncode in {stop["rc"] for stop in SIGNALS.values()}
        sys.exit(0 if stopped_by_signal else manager.returncode)
