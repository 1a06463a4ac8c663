"""Logs: request ids, and one message followed through the JSON logs of every process from its POST to its
frame."""

import asyncio
import json
import re
import urllib.request

import pytest
import websockets
from rest_framework.test import APIClient

from chats.pipeline.wire import group_message, parse_envelope
from chats.runtime.embedded import free_port
from tests.helpers import serving, started
from tests.operations.support import ann_with_a_chat, json_lines

FIRST_EVENT_TIMEOUT = 60


# --- request ids -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sane_x_request_id_is_kept_and_answered():
    response = APIClient().get("/api/health/", HTTP_X_REQUEST_ID="lb-7f3a.2_x")

    assert response["X-Request-ID"] == "lb-7f3a.2_x"


@pytest.mark.django_db
@pytest.mark.parametrize("incoming", ["a" * 65, "two words", "new\nline", "<script>", None])
def test_a_missing_or_unsafe_x_request_id_is_replaced_by_a_new_one(incoming):
    headers = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}
    first = APIClient().get("/api/health/", **headers)["X-Request-ID"]
    second = APIClient().get("/api/health/", **headers)["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


@pytest.mark.django_db
def test_the_request_id_is_written_into_the_envelopes_the_request_commits(client, outbox):
    response = client.post("/api/chats/", {"title": "Lunch"}, format="json", HTTP_X_REQUEST_ID="req-1")

    assert response.status_code == 201
    assert [envelope["request_id"] for envelope in outbox()] == ["req-1"]


def test_an_envelope_without_a_request_id_is_still_an_envelope():
    envelope = {"event_id": "8a0e6f4e-5b8f-4d7e-9a49-5b0d5c7f9a10", "event_type": "chat.deleted",
                "occurred_at": "2026-11-29T04:00:00.250000Z", "chat_id": "2f1d0c39-6c36-4a53-9a3c-1d4f7f1b2a11",
                "payload": {}}

    parsed = parse_envelope(json.dumps(envelope).encode())
    message = group_message(parsed)

    assert message["request_id"] is None
    assert message["occurred_at"] == 1795924800.25


# --- one message through every process's JSON logs --------------------------------------------------------


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_with_request_id(url: str, body: dict, token: str, request_id: str) -> tuple[int, dict, str]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}", "X-Request-ID": request_id},
    )
    with _NO_PROXY.open(request, timeout=30) as response:
        return response.status, json.loads(response.read()), response.headers["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
def test_with_json_logs_one_message_is_followed_by_its_ids_from_its_post_through_relay_and_forwarder_to_its_frame(
    kafka, channel_layer, worker
):
    json_debug = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = serving(worker, port, **json_debug)
    relay = worker("relay_outbox", **json_debug)
    forwarder = worker("forward_events", **json_debug)
    started(relay, lambda: "connected to Kafka" in relay.output(), "the relay")
    started(forwarder, lambda: "connected to Kafka" in forwarder.output(), "the forwarder")
    token, chat = ann_with_a_chat(base)
    request_id = "follow-me.42"

    async def scenario() -> dict:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chats/{chat['id']}/?token={token}", proxy=None) as ws:
            presence = json.loads(await asyncio.wait_for(ws.recv(), FIRST_EVENT_TIMEOUT))  # a chat stream's first
            assert (presence["type"], presence["online"]) == ("presence", ["ann"])
            status, message, answered_id = await asyncio.to_thread(
                post_with_request_id, f"{base}/api/chats/{chat['id']}/messages/", {"text": "hi"}, token, request_id
            )
            assert (status, answered_id) == (201, request_id)
            return json.loads(await asyncio.wait_for(ws.recv(), FIRST_EVENT_TIMEOUT))

    frame = asyncio.run(scenario())
    event_id = frame["event_id"]
    assert event_id is not None
    exits = [relay.stop(), forwarder.stop(), web.stop()]
    assert exits == [0, 0, 0], relay.output() + forwarder.output()
    web_log, relay_log, forwarder_log = (json_lines(p.output()) for p in (web, relay, forwarder))

    def lines(log: list[dict], **fields) -> list[dict]:
        return [line for line in log if all(line.get(key) == value for key, value in fields.items())]

    [request_line] = lines(web_log, logger="chats.api.requests", request_id=request_id)
    assert (request_line["method"], request_line["status"]) == ("POST", 201)
    assert request_line["path"] == f"/api/chats/{chat['id']}/messages/"
    for process, log, logger in ((relay, relay_log, "chats.pipeline.relay"),
                                 (forwarder, forwarder_log, "chats.pipeline.forwarder"),
                                 (web, web_log, "chats.live.consumers")):
        followed = lines(log, logger=logger, event_id=event_id)
        assert followed, f"no {logger} line for {event_id}"
        assert {(line["request_id"], line["chat_id"]) for line in followed} == {(request_id, chat["id"])}
    # Every line is one object with the same core keys, whichever library logged it.
    for line in web_log + relay_log + forwarder_log:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
