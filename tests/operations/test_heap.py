"""The long-running processes freeze what their startup made (chats.runtime.heap), so that full garbage
collections walk only what they make while serving: each full collection over a web process's ~100,000 startup
objects stopped it for 50-90 ms, the p99 of POST -> frame (bench/README.md, "History and causes": garbage
collection pauses)."""

import gc

import pytest
from daphne import server as daphne_server
from django.core.management import call_command

from chats.management.commands import forward_events, relay_outbox
from chats.runtime import webserver


@pytest.fixture
def frozen_on_entry():
    """How many objects were frozen when each stubbed serving loop began; unfrozen again afterwards."""
    assert gc.get_freeze_count() == 0
    seen: list[int] = []
    yield seen
    gc.unfreeze()


def test_the_web_server_freezes_its_startup_objects_before_it_serves(frozen_on_entry, monkeypatch):
    monkeypatch.setattr(daphne_server.Server, "run", lambda self: frozen_on_entry.append(gc.get_freeze_count()))
    webserver.Server(application=None, endpoints=["tcp:port=0"]).run()
    assert frozen_on_entry and frozen_on_entry[0] > 10_000  # Django, DRF, Channels and twisted, at least


def test_the_relay_freezes_before_its_loop_but_not_for_a_single_drain(frozen_on_entry, monkeypatch, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9"  # never dialled: the loop is a stub
    def loop(*args, **kwargs) -> int:
        frozen_on_entry.append(gc.get_freeze_count())
        return 0

    monkeypatch.setattr(relay_outbox, "relay_forever", loop)
    call_command("relay_outbox", "--once")
    assert frozen_on_entry == [0]  # --once drains and exits: nothing to gain
    call_command("relay_outbox")
    assert frozen_on_entry[1] > 10_000


def test_the_forwarder_freezes_before_its_loop(frozen_on_entry, monkeypatch, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9"

    async def loop(*args) -> None:
        frozen_on_entry.append(gc.get_freeze_count())

    monkeypatch.setattr(forward_events, "forward_forever", loop)
    call_command("forward_events")
    assert frozen_on_entry and frozen_on_entry[0] > 10_000
