"""`manage.py serve`: the web process, daphne with the service's websocket limits, on a port it shares.

One daphne process uses one core: its event loop does every websocket frame and every request. This
command opens the listening socket with SO_REUSEPORT and then becomes daphne on it (`--fd`), so several
copies can listen on one port and the kernel spreads new connections over them; `runstack` starts one
per core. Each copy is a full server: the channel layer, throttles and socket counts live in Redis.
"""

from __future__ import annotations

import os
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chats.workers import positive_int

LISTEN_BACKLOG = 1024  # connections the kernel queues per process while daphne is busy


def daphne_argv(fd: int) -> list[str]:
    """daphne on an open listening socket, refusing websocket messages over the limit before buffering them
    (close 1009); the application is ASGI_APPLICATION, in daphne's `module:attribute` form."""
    limit = str(settings.CHAT_WS_MAX_FRAME_BYTES)
    module, attribute = settings.ASGI_APPLICATION.rsplit(".", 1)
    return [
        sys.executable, "-m", "daphne", "--fd", str(fd),
        "--websocket-max-message-size", limit, "--websocket-max-frame-size", limit,
        f"{module}:{attribute}",
    ]


class Command(BaseCommand):
    help = "Run daphne on a port that several `serve` processes can share (SO_REUSEPORT)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=positive_int, default=os.environ.get("PORT", "8000"))

    def handle(self, *args, host, port, **options):
        if port > 65535:
            raise CommandError(f"--port {port}: a port is at most 65535")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=True)
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error}") from None
        listener.set_inheritable(True)
        sys.stdout.flush()
        os.execv(sys.executable, daphne_argv(listener.fileno()))
