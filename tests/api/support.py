"""Assertions, walks and races that the API tests share."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from rest_framework.test import APIClient

from chats.models import Chat, Membership, Message, OutboxEvent


def assert_error(response, status: int, code: str | None = None) -> None:
    """The one error shape: `{"error": {"code", "message"}}`, JSON, with the given status (and code)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body


def database_state() -> tuple:
    """What a refused request must leave unchanged: the chats, the messages and the outbox (its event ids at
    [2]), then each chat's changing columns (its version too), every membership with its role and read
    position, and every message as it is now (text, edited, deleted, version)."""
    return (
        Chat.objects.count(),
        Message.objects.count(),
        list(OutboxEvent.objects.order_by("id").values_list("event_id", flat=True)),
        list(
            Chat.objects.order_by("id").values_list(
                "id", "title", "last_seq", "visibility", "member_count", "version"
            )
        ),
        membership_rows(),
        message_rows(),
    )


def message_rows() -> list[tuple]:
    """Every message as (chat id, seq, text, edited_at, deleted, version), in a stable order."""
    return list(
        Message.objects.order_by("chat_id", "seq").values_list(
            "chat_id", "seq", "text", "edited_at", "deleted", "version"
        )
    )


def membership_rows() -> list[tuple]:
    """Every membership as (chat id, username, role, last read seq), in a stable order."""
    return list(
        Membership.objects.order_by("chat_id", "user__username").values_list(
            "chat_id", "user__username", "role", "last_read_seq"
        )
    )


def walk(api, url: str) -> list[list[dict]]:
    """Every page from `url` on, following `next` until it is null."""
    pages = []
    while url is not None:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next"}
        pages.append(body["results"])
        url = body["next"]
        assert len(pages) < 100, "next never became null"
    return pages


# --- races ----------------------------------------------------------------------------------------


def hold_at_once(monkeypatch, api_module, late: type | None = None) -> None:
    """From now on the next two requests through `api_module` reach their command together (a barrier in front
    of its mediator), the one whose command is a `late` a moment after the other: the race a test stages."""
    barrier = threading.Barrier(2)
    real_mediator = api_module.mediator

    class AtOnce:
        def handle_command(self, command):
            barrier.wait(timeout=30)
            if late is not None and isinstance(command, late):
                time.sleep(0.15)
            return real_mediator.handle_command(command)

    monkeypatch.setattr(api_module, "mediator", AtOnce())


def pause_after_reads(monkeypatch, repository: type, seconds: float, method: str = "get") -> None:
    """Every `repository.<method>` is followed by a pause: time for the other request to read the same row, which
    only the chat's row lock keeps it from doing before this one writes."""
    read = getattr(repository, method)

    def slow_read(self, *args, **kwargs):
        found = read(self, *args, **kwargs)
        time.sleep(seconds)
        return found

    monkeypatch.setattr(repository, method, slow_read)


def at_once(*requests) -> list:
    """Runs each request (a callable) in a thread of its own; their responses, or what they raised."""

    def run(request):
        try:
            return request()
        except Exception as error:  # asserted on by the test
            return error
        finally:
            connection.close()  # each thread has its own database connection

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(run, requests))


def own_client(make_client, user) -> APIClient:
    api = make_client(user)
    api.raise_request_exception = False  # a 500 is an answer to assert on, not an exception in a thread
    return api
