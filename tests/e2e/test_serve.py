"""`manage.py serve` and how many of them `runstack` starts; the running processes are tested end to end."""

import os
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from chats.management.commands.serve import daphne_argv
from chats.runtime.processes import default_web_processes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "invalid positive integer value: '0'"),
        (["--port", "http"], "invalid positive integer value: 'http'"),
        (["--port", "70000"], "a port is at most 65535"),
    ],
)
def test_a_bad_port_is_refused_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("serve", *args)


def test_a_port_another_program_holds_is_refused_with_a_clear_message():
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: not ours to share
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}: .*Address already in use"):
            call_command("serve", "--port", str(port))


def test_daphne_runs_the_configured_application_with_our_protocols_and_only_a_memory_ceiling_on_frames(settings):
    settings.CHAT_WS_MAX_FRAME_BYTES = 4096
    argv = daphne_argv(7)
    assert argv[1:3] == ["-m", "chats.runtime.webserver"]
    assert argv[-1] == "chatproject.asgi:application"
    assert argv[argv.index("--fd") + 1] == "7"
    # autobahn holds the frames the server sends to these too: far above any of them, not the client's limit.
    assert argv[argv.index("--websocket-max-message-size") + 1] == str(1024 * 1024)
    assert argv[argv.index("--websocket-max-frame-size") + 1] == str(1024 * 1024)
    # The consumers refuse a socket they could not admit in time with 1013; daphne's drop comes later.
    settings.CHAT_WS_ADMISSION_SECONDS = 2.5
    argv = daphne_argv(7)
    assert argv[argv.index("--websocket_connect_timeout") + 1] == "5"


def test_web_processes_one_per_core_on_postgresql_one_on_sqlite_unless_web_concurrency_says(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    expected = (os.cpu_count() or 1) if connection.vendor == "postgresql" else 1
    assert default_web_processes() == expected
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert default_web_processes() == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "none")
    with pytest.raises(ImproperlyConfigured, match="WEB_CONCURRENCY='none'"):
        default_web_processes()


def test_runstack_refuses_a_bad_web_concurrency_before_starting_anything(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    with pytest.raises(CommandError, match="WEB_CONCURRENCY='0': give a whole number >= 1"):
        call_command("runstack")
