"""The status line on the wire, through the real web server: twisted knows no reason phrase for some codes
(429 among them) and would send `429 Unknown Status`."""

import json
import socket
from http import HTTPStatus

import pytest
from twisted.web.http import RESPONSES

from chats.runtime.embedded import free_port
from chats.runtime.webserver import WebRequest
from tests.helpers import serving

pytestmark = pytest.mark.django_db(transaction=True)


def status_line(port: int, method: str, path: str, body: dict) -> str:
    """The first line of the server's answer, exactly as sent."""
    data = json.dumps(body).encode()
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode("latin1")


def test_a_throttled_request_is_sent_as_429_too_many_requests(channel_layer, worker):
    port = free_port()
    serving(worker, port, CHAT_REGISTER_RATE="1/hour")

    lines = [
        status_line(port, "POST", "/api/auth/register/", {"username": name, "password": "a long passphrase 7"})
        for name in ("ann", "bob")
    ]

    assert lines[-1] == "HTTP/1.1 429 Too Many Requests"


def test_every_standard_code_twisted_lacks_gets_its_standard_phrase():
    missing = [status for status in HTTPStatus if status.value not in RESPONSES]
    assert missing, "twisted now knows every phrase: the override in WebRequest may go"
    request = WebRequest.__new__(WebRequest)  # setResponseCode reads no state of the request

    for status in missing:
        request.setResponseCode(status.value)
        assert request.code_message == status.phrase.encode("ascii"), status
