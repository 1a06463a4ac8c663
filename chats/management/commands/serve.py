"""`manage.py serve`: the web process, daphne with the service's protocol classes (`chats.runtime.webserver`), on a
port it shares.

One daphne process uses one core: its event loop does every websocket frame and every request. This
command opens the listening socket with SO_REUSEPORT and then becomes daphne on it (`--fd`), so several
copies can listen on one port and the kernel spreads new connections over them; `runstack` starts one
per core. Each copy is a full server: the channel layer, throttles and socket counts live in Redis.
"""

from __future__ import annotations

import math
import os
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chats.runtime import metrics
from chats.runtime.arguments import positive_int

LISTEN_BACKLOG = 1024  # connections the kernel queues per process while daphne is busy
# autobahn's limit on a websocket message, each way. A frame the server sends is under ~30 KB (a
# 4096-character message is at most 16 KB of UTF-8, or 24 KB if every character is a control character,
# which JSON still escapes as \uXXXX); daphne's own default, 1 MiB, is far above that and bounds what a
# client can make the process buffer before the consumer refuses its frame.
MAX_WEBSOCKET_MESSAGE_BYTES = 1024 * 1024
HANDSHAKE_MARGIN_SECONDS = 2  # for the 1013 to be sent after admission gives up


def handshake_seconds() -> int:
    """daphne's limit on a websocket handshake (it drops a connection still unanswered then, with no HTTP status),
    set past the consumers' own limit (CHAT_WS_ADMISSION_SECONDS), after which they answer 1013 themselves."""
    return math.ceil(settings.CHAT_WS_ADMISSION_SECONDS) + HANDSHAKE_MARGIN_SECONDS


def daphne_argv(fd: int) -> list[str]:
    """daphne (as `chats.runtime.webserver` runs it) on an open listening socket; the application is ASGI_APPLICATION,
    in daphne's `module:attribute` form.

    autobahn's websocket limits apply to the frames the server sends as well, so they are only a memory
    ceiling; the consumers refuse a client's frame over CHAT_WS_MAX_FRAME_BYTES (close 1009).
    """
    ceiling = str(MAX_WEBSOCKET_MESSAGE_BYTES)
    module, attribute = settings.ASGI_APPLICATION.rsplit(".", 1)
    return [
        sys.executable, "-m", "chats.runtime.webserver", "--fd", str(fd),
        "--websocket-max-message-size", ceiling, "--websocket-max-frame-size", ceiling,
        "--websocket_connect_timeout", str(handshake_seconds()),
        f"{module}:{attribute}",
    ]


class Command(BaseCommand):
    help = "Run daphne on a port that several `serve` processes can share (SO_REUSEPORT)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=positive_int, default=os.environ.get("PORT", "8000"))
        # Processes sharing a port answer GET /metrics in turn, as the kernel picks; a port of its own lets
        # each one be scraped.
        metrics.add_arguments(parser)

    def handle(self, *args, host, port, metrics_port, metrics_host, **options):
        for flag, value in (("--port", port), ("--metrics-port", metrics_port)):
            if value is not None and value > 65535:
                raise CommandError(f"{flag} {value}: a port is at most 65535")
        if metrics_port is not None:
            os.environ[metrics.ADDRESS_VARIABLE] = f"{metrics_host}:{metrics_port}"  # for daphne's process (execv)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=True)
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error}") from None
        listener.set_inheritable(True)
        sys.stdout.flush()
        os.execv(sys.executable, daphne_argv(listener.fileno()))
