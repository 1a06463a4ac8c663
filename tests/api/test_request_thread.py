"""Under ASGI a request's middleware and view run in one worker thread, handed over once
(chats/runtime/django_handler.py), not in a thread, then back on the event loop, then in a thread again."""

import pytest
from asgiref import sync
from channels.testing import HttpCommunicator

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
