"""Every Prometheus metric of the service, defined once. Each process exposes the default registry:
web processes at `GET /metrics` (chats.api.metrics), `relay_outbox` and `forward_events` with
`--metrics-port` (`serve_metrics`).

A process increments only the metrics of its own role; the others are exposed by every process with no
samples (labelled families) or at zero.

Per-frame cost: a websocket frame costs one counter increment and, for a live frame, one histogram
observation against a float the forwarder put in the group message (no date parsing per frame).
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger("chats.runtime.metrics")

# --- relay_outbox ------------------------------------------------------------------------------------------

RELAY_EVENTS = Counter(
    "chat_relay_events", "Outbox rows the relay settled: published (acknowledged by Kafka) or parked (refused).",
    ["outcome"],
)
RELAY_FAILURES = Counter(
    "chat_relay_failures",
    "Batches the relay could not settle and will retry (nothing was marked), by what was unavailable.",
    ["reason"],
)
RELAY_BATCH_SECONDS = Histogram(
    "chat_relay_batch_seconds", "Time to claim, send, await acknowledgement and mark one non-empty batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# --- forward_events ----------------------------------------------------------------------------------------

FORWARDER_RECORDS = Counter(
    "chat_forwarder_records",
    "Kafka records the forwarder settled: forwarded to the channel layer, duplicate (event_id seen recently, "
    "dropped) or invalid (not an envelope, skipped).",
    ["outcome"],
)
FORWARDER_EVENT_AGE_SECONDS = Histogram(
    "chat_forwarder_event_age_seconds",
    "How old an event is when the forwarder sends it to the channel layer, in two stages: commit_to_produce, "
    "from its occurred_at (stamped in the committing transaction) to the relay's produce (the Kafka record's "
    "timestamp): the outbox and the relay; produce_to_forward, from there to the forwarder: Kafka and the "
    "fetch wait. With chat_commit_to_frame_seconds, the rest is the channel layer and the web process. "
    "Compares clocks of different processes (and hosts).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EVENT_AGE_STAGES = ("commit_to_produce", "produce_to_forward")
FORWARDER_LAG = Gauge(
    "chat_forwarder_lag_records",
    "Records between the forwarder's position and the partition's end offset, as of its last poll. "
    "UNRELIABLE on the embedded Tansu broker (make run, the tests), which reports wrong end offsets; "
    "meaningful on a real Kafka.",
    ["partition"],
)

# --- web processes: websockets -----------------------------------------------------------------------------

OPEN_SOCKETS = Gauge("chat_ws_open_sockets", "Websockets accepted and still open in this process.", ["kind"])
FRAMES_SENT = Counter("chat_ws_frames_sent", "Websocket frames this process sent (every type).", ["kind"])
GAP_FILLS = Counter(
    "chat_ws_gap_fills",
    "Reads from the database to fill missing seqs on a live chat socket: live_gap when a live frame showed "
    "a gap, position_check when the periodic position check found the socket behind.",
    ["trigger"],
)
CLOSES = Counter("chat_ws_closes", "Websockets the server closed, by close code.", ["code"])
COMMIT_TO_FRAME_SECONDS = Histogram(
    "chat_commit_to_frame_seconds",
    "From an event's occurred_at (stamped in the transaction that commits it) to its live frame leaving "
    "the websocket consumer; spans the outbox, relay, Kafka, forwarder and channel layer. Compares clocks "
    "of different processes (and hosts).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

SOCKET_KINDS = ("lobby", "chat")
GAP_TRIGGERS = ("live_gap", "position_check")
FORWARDER_OUTCOMES = ("forwarded", "duplicate", "invalid")
RELAY_OUTCOMES = ("published", "parked")
RELAY_FAILURE_REASONS = ("broker", "database")


def initialize(*labelled: tuple[Counter | Gauge | Histogram, tuple[str, ...]]) -> None:
    """Create the children of labelled metrics, so that they are scraped at 0 before their first event
    (a rate() over a series that appears only with its first increment misses that increment)."""
    for metric, values in labelled:
        for value in values:
            metric.labels(value)


# --- the outbox, read at scrape time -----------------------------------------------------------------------


class OutboxBacklog:
    """A collector running one query per scrape: pending rows, the oldest pending row's age, parked rows.

    Read when scraped rather than kept up to date, so it is right whichever process wrote or relayed the
    rows. `close_connection`: a scrape served by prometheus_client's HTTP server runs in a new thread each
    time, whose database connection Django would never close (a web request's is closed by Django).
    """

    def __init__(self, close_connection: bool) -> None:
        self.close_connection = close_connection

    def describe(self):
        return []  # no query at registration time

    def collect(self):
        from django.db import DatabaseError, connection

        from chats.queries import outbox_state

        try:
            row = outbox_state()
        except DatabaseError as error:
            logger.warning("outbox metrics unavailable: %s", error)
            return
        finally:
            if self.close_connection:
                connection.close()
        yield GaugeMetricFamily("chat_outbox_pending", "Outbox rows waiting for the relay.", value=row["pending"])
        age = row["oldest_pending_seconds"] or 0.0
        yield GaugeMetricFamily(
            "chat_outbox_oldest_pending_seconds", "Age of the oldest outbox row waiting for the relay (0 if none).",
            value=age,
        )
        yield GaugeMetricFamily(
            "chat_outbox_parked", "Outbox rows Kafka refused, set aside until `relay_outbox --retry-failed`.",
            value=row["parked"],
        )


_outbox_lock = threading.Lock()
_outbox_collector: OutboxBacklog | None = None


def expose_outbox_backlog(close_connection: bool) -> None:
    """Add the outbox collector to this process's registry (once)."""
    global _outbox_collector
    with _outbox_lock:
        if _outbox_collector is None:
            _outbox_collector = OutboxBacklog(close_connection)
            REGISTRY.register(_outbox_collector)


# `serve --metrics-port` hands the address to the daphne process it becomes (chats.runtime.webserver).
ADDRESS_VARIABLE = "CHAT_METRICS_ADDRESS"


def add_arguments(parser) -> None:
    """`--metrics-port` and `--metrics-host` of the commands (serve, relay_outbox, forward_events)."""
    from chats.runtime.arguments import positive_int

    parser.add_argument(
        "--metrics-port", type=positive_int, default=None,
        help="Serve Prometheus metrics at http://<metrics-host>:<port>/metrics (default: off).",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1",
        help="Address the metrics port listens on (default 127.0.0.1; 0.0.0.0 for every interface).",
    )


def serve_from_options(options: dict) -> None:
    """For the workers: the registry on a daemon thread, if --metrics-port was given."""
    port, host = options.get("metrics_port"), options.get("metrics_host") or "127.0.0.1"
    if port is None:
        return
    from django.core.management.base import CommandError

    try:
        start_http_server(port, addr=host)
    except OSError as error:
        raise CommandError(f"--metrics-port {port}: cannot listen on {host}:{port}: {error}") from None
    logger.info("metrics at http://%s:%d/metrics", host, port)
