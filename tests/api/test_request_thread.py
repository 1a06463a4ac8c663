"""Under ASGI a request's middleware and view run in one worker thread, handed over once
(chats/runtime/django_handler.py), not in a thread, then back on the event loop, then in a thread again."""

import threading

import pytest
from asgiref import sync
from channels.testing import HttpCommunicator
from django.core import signals

from chatproject.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_request_is_handed_from_the_event_loop_to_its_thread_once_and_never_back(monkeypatch):
    hand_offs = []

    def counting(direction: str, call):
        def counted(self, *args, **kwargs):
            hand_offs.append((direction, getattr(getattr(self, "func", None) or self.awaitable, "__qualname__", "?")))
            return call(self, *args, **kwargs)

        return counted

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counting("to a thread", sync.SyncToAsync.__call__))
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counting("back to the loop", sync.AsyncToSync.__call__))

    communicator = HttpCommunicator(application, "GET", "/api/health/", headers=[(b"host", b"localhost")])
    response = await communicator.get_response(timeout=10)

    assert response["status"] in (200, 503)
    assert [direction for direction, _ in hand_offs].count("back to the loop") == 0, hand_offs
    assert [direction for direction, _ in hand_offs].count("to a thread") <= 3, hand_offs  # the stack; signals


async def test_requests_one_after_another_run_on_one_thread_kept_for_them():
    """Django starts and joins a thread per request; here a request takes an idle one (it still has it alone)."""
    threads = []  # the Thread objects themselves: a new thread may reuse a dead one's ident

    def record(sender, **kwargs):
        threads.append(threading.current_thread())

    signals.request_started.connect(record)  # sent on the request's thread, before its middleware and view
    try:
        for _ in range(3):
            communicator = HttpCommunicator(application, "GET", "/api/health/", headers=[(b"host", b"localhost")])
            assert (await communicator.get_response(timeout=10))["status"] in (200, 503)
    finally:
        signals.request_started.disconnect(record)

    assert len(threads) == 3
    assert all(thread is threads[0] for thread in threads), {thread.name for thread in threads}
    assert threads[0] is not threading.main_thread()
