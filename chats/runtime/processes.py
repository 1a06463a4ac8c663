"""How many web processes to run when nobody says."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from chats.runtime.arguments import positive_int


def default_web_processes() -> int:
    """WEB_CONCURRENCY if set; else one web process per core on PostgreSQL, and one on SQLite.

    SQLite takes one writer at a time, so on SQLite a second web process adds lock waits, not write
    throughput (measured in `make bench`'s ingest scenario; bench/README.md has the figures).
    """
    if "WEB_CONCURRENCY" in os.environ:
        try:
            return positive_int(os.environ["WEB_CONCURRENCY"])
        except ValueError:
            raise ImproperlyConfigured(f"WEB_CONCURRENCY={os.environ['WEB_CONCURRENCY']!r}: give a whole number >= 1") from None
    return (os.cpu_count() or 1) if connection.vendor == "postgresql" else 1
