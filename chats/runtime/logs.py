"""Logging: plain text by default, one JSON object per line with LOG_FORMAT=json (chatproject.settings.LOGGING),
and the ids that let one message be followed from its POST to its frames.

- `request_id`: set per HTTP request by chats.api.request_id, kept in a context variable, and put on every
  record logged while the request runs by `ContextFilter`; the unit of work writes it into the envelope,
  so the relay, the forwarder and the websocket consumers log it with the event.
- `event_id`, `chat_id`: passed as `extra` by the pipeline's log lines (`event_fields`).

In JSON, every `extra` field becomes a key of the object.
"""

from __future__ import annotations

import logging
import logging.config
import re
from contextvars import ContextVar
from typing import Any

from daphne.access import AccessLogGenerator

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# What an incoming X-Request-ID may be to be kept: anything else is replaced, so a client cannot put
# arbitrary text (newlines, markup, megabytes) into every log line of its request.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def sane_request_id(value: Any) -> str | None:
    return value if isinstance(value, str) and SANE_REQUEST_ID.fullmatch(value) else None


class ContextFilter(logging.Filter):
    """Adds the current request's id to each record that has none (a handler filter: it sees every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            current = request_id.get()
            if current is not None:
                record.request_id = current
        return True


def event_fields(envelope: dict[str, Any]) -> dict[str, Any]:
    """The `extra` of a pipeline log line about one event."""
    return {
        "event_id": envelope.get("event_id"),
        "chat_id": envelope.get("chat_id"),
        "request_id": envelope.get("request_id"),
    }


class LoggedAccessLog(AccessLogGenerator):
    """daphne's access log through `logging` (so in JSON too), instead of straight to stdout."""

    logger = logging.getLogger("daphne.access")

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None) -> None:
        self.logger.info(
            '%s "%s" %s %s', host, request, status or "-", length or "-",
            extra={"client": host, "request": request, "status": status, "size": length},
        )


def access_log(default):
    """The access logger daphne should use: its own NCSA lines on stdout, or through logging in JSON."""
    from django.conf import settings

    if default is not None and getattr(settings, "LOG_FORMAT", "plain") == "json":
        return LoggedAccessLog(None)
    return default


def configure(config: dict) -> None:
    """LOGGING_CONFIG: Django's dictConfig, with Python's warnings logged too (so they are JSON lines as well)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
