"""Prometheus metrics: who may read `GET /metrics`, and what a running web process, relay and forwarder
report after real traffic."""

import asyncio
import json

import pytest
import websockets
from django.test import Client
from kafka import KafkaProducer

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.models import OutboxEvent
from chats.runtime.embedded import free_port
from messaging_domain.commands import CreateChatCommand, CreateMessageCommand
from tests.helpers import http_json, serving, started, wait_until
from tests.operations.support import ann_with_a_chat, scrape

FIRST_EVENT_TIMEOUT = 60  # the forwarder joins its consumer group a few seconds after it connects


# --- who may read /metrics ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_metrics_are_answered_to_loopback(address):
    response = Client(REMOTE_ADDR=address).get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"# TYPE chat_ws_open_sockets gauge" in response.content
    assert b"chat_outbox_pending " in response.content


@pytest.mark.django_db
def test_metrics_are_a_json_404_to_an_address_not_allowed_whatever_x_forwarded_for_says(settings):
    settings.METRICS_ALLOWED_IPS = ["10.9.0.0/16"]
    outsider = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="127.0.0.1")

    for response in (outsider.get("/metrics"), outsider.post("/metrics")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_metrics_are_answered_to_an_address_in_metrics_allowed_ips(settings):
    settings.METRICS_ALLOWED_IPS = ["10.9.0.0/16", "192.0.2.5"]

    assert Client(REMOTE_ADDR="10.9.8.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.5").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.6").get("/metrics").status_code == 404


# --- a running web process ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_web_process_reports_the_backlog_its_sockets_frames_and_the_commit_to_frame_latency(
    kafka, channel_layer, worker
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serving(worker, port)
    forwarder = worker("forward_events")
    started(forwarder, lambda: "connected to Kafka" in forwarder.output(), "the forwarder")
    token, chat = ann_with_a_chat(base)

    # No relay yet: the chat's event waits in the outbox, and the web process says so.
    before = scrape(f"{base}/metrics")
    assert before.value("chat_outbox_pending") == 1
    assert before.value("chat_outbox_oldest_pending_seconds") >= 0
    assert before.value("chat_ws_open_sockets", kind="chat") == 0

    relay = worker("relay_outbox")
    started(relay, lambda: "connected to Kafka" in relay.output(), "the relay")

    async def receive_one_message() -> tuple[dict, object]:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/chats/{chat['id']}/?token={token}", proxy=None)
        presence = json.loads(await asyncio.wait_for(ws.recv(), 10))  # a chat stream's first frame
        assert (presence["type"], presence["online"]) == ("presence", ["ann"])
        status, message = await asyncio.to_thread(
            http_json, base, "POST", f"/api/chats/{chat['id']}/messages/", {"text": "hi"}, token
        )
        assert status == 201, message
        return json.loads(await asyncio.wait_for(ws.recv(), FIRST_EVENT_TIMEOUT)), ws

    async def scenario():
        frame, ws = await receive_one_message()
        assert (frame["type"], frame["message"]["seq"]) == ("message.created", 1)
        during = await asyncio.to_thread(scrape, f"{base}/metrics")
        await ws.close()
        return during

    during = asyncio.run(scenario())

    assert during.value("chat_ws_open_sockets", kind="chat") == 1
    assert during.value("chat_ws_frames_sent_total", kind="chat") == 2  # its presence frame and the message
    assert during.value("chat_commit_to_frame_seconds_count", kind="chat") == 1
    assert during.value("chat_commit_to_frame_seconds_sum", kind="chat") > 0
    assert during.value("chat_commit_to_frame_seconds_bucket", kind="chat", le="+Inf") == 1
    for family in ("chat_ws_gap_fills", "chat_ws_closes", "chat_relay_events", "chat_forwarder_records"):
        assert family in during.families
    after = wait_until(
        lambda: (s := scrape(f"{base}/metrics")).value("chat_ws_open_sockets", kind="chat") == 0
        and s.value("chat_outbox_pending") == 0 and s,
        message="the socket to be counted closed and the outbox drained",
    )
    assert after.value("chat_outbox_oldest_pending_seconds") == 0


# --- the workers' --metrics-port ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_relay_and_the_forwarder_report_sends_the_backlog_and_records_by_outcome(
    kafka, channel_layer, worker, ann, settings
):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=participant_of(ann)))
    for n in range(3):
        mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=f"m{n}", author=participant_of(ann)))
    relay_port, forwarder_port = free_port(), free_port()
    relay = worker("relay_outbox", "--metrics-port", str(relay_port))
    forwarder = worker("forward_events", "--metrics-port", str(forwarder_port))
    started(relay, lambda: f"metrics at http://127.0.0.1:{relay_port}/metrics" in relay.output(), "relay metrics")
    started(forwarder, lambda: f":{forwarder_port}/metrics" in forwarder.output(), "forwarder metrics")
    relay_url, forwarder_url = (f"http://127.0.0.1:{port}/metrics" for port in (relay_port, forwarder_port))

    relayed = wait_until(
        lambda: (s := scrape(relay_url)).value("chat_relay_events_total", outcome="published") == 4 and s,
        message="the relay to count 4 published events",
    )
    assert relayed.value("chat_relay_events_total", outcome="parked") == 0
    assert relayed.value("chat_outbox_pending") == 0
    assert relayed.value("chat_outbox_parked") == 0
    assert relayed.value("chat_relay_batch_seconds_count") >= 1
    assert relayed.value("chat_relay_failures_total", reason="broker") == 0

    # One record that is not an envelope, and one event sent a second time.
    with KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS) as producer:
        first = OutboxEvent.objects.filter(event_type="chat.created").get().envelope
        producer.send(kafka, key=first["chat_id"].encode(), value=b"not json")
        producer.send(kafka, key=first["chat_id"].encode(), value=json.dumps(first).encode())
        producer.flush()

    forwarded = wait_until(
        lambda: (s := scrape(forwarder_url)).value("chat_forwarder_records_total", outcome="forwarded") == 4
        and s.value("chat_forwarder_records_total", outcome="invalid") == 1
        and s.value("chat_forwarder_records_total", outcome="duplicate") == 1 and s,
        timeout=FIRST_EVENT_TIMEOUT,
        message="the forwarder to count 4 forwarded, 1 invalid and 1 duplicate record",
    )
    for stage in ("commit_to_produce", "produce_to_forward"):  # each forwarded event's age, once
        assert forwarded.value("chat_forwarder_event_age_seconds_count", stage=stage) == 4
        assert forwarded.value("chat_forwarder_event_age_seconds_sum", stage=stage) > 0
    lag = forwarded.families["chat_forwarder_lag_records"]
    assert "UNRELIABLE on the embedded Tansu broker" in lag.documentation
    assert all(sample.value >= 0 for sample in lag.samples)

    assert relay.stop() == 0 and forwarder.stop() == 0, relay.output() + forwarder.output()


@pytest.mark.django_db(transaction=True)
def test_web_processes_sharing_a_port_can_each_be_scraped_on_a_metrics_port_of_their_own(channel_layer, worker):
    port, metrics_ports = free_port(), [free_port(), free_port()]
    for metrics_port in metrics_ports:
        serving(worker, port, "--metrics-port", str(metrics_port))
    token, chat = ann_with_a_chat(f"http://127.0.0.1:{port}")

    async def open_sockets_and_scrape() -> list[float]:
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/ws/chats/{chat['id']}/?token={token}",
                                            proxy=None) for _ in range(6)]
        for ws in sockets:  # each socket answers once it is accepted, and counted
            presence = json.loads(await asyncio.wait_for(ws.recv(), 10))  # a chat stream's first frame
            assert (presence["type"], presence["online"]) == ("presence", ["ann"])
            await ws.send('{"type": "ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
        scrapes = [await asyncio.to_thread(scrape, f"http://127.0.0.1:{p}/metrics") for p in metrics_ports]
        for ws in sockets:
            await ws.close()
        return [s.value("chat_ws_open_sockets", kind="chat") for s in scrapes]

    per_process = asyncio.run(open_sockets_and_scrape())
    assert sum(per_process) == 6  # every socket counted once, by the process that holds it
