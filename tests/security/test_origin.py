"""A browser page may open a socket only from the socket's own origin (scheme, host and port) or a trusted one;
clients that send no Origin go on to authenticate. Through daphne, as a browser's handshake reaches it."""

import json

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chatproject.asgi import application
from chats.runtime.embedded import free_port
from tests.helpers import serving


def opens(url: str, origin: str | None) -> bool:
    """Whether a socket with this Origin opens and answers a ping; False when the handshake is refused (403)."""
    try:
        socket = connect(url, origin=origin, proxy=None, open_timeout=20)
    except InvalidStatus as refused:
        assert refused.response.status_code == 403
        return False
    with socket:
        socket.send(json.dumps({"type": "ping"}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "pong"}
    return True


@pytest.fixture
def lobby(ann, channel_layer, worker):
    """Starts daphne with a trusted origin; returns the lobby's URL with ann's token and the daphne port."""
    port, trusted_port = free_port(), free_port()
    token = Token.objects.create(user=ann).key
    serving(worker, port, DJANGO_CSRF_TRUSTED_ORIGINS=f"http://trusted.example:{trusted_port}")
    return f"ws://127.0.0.1:{port}/ws/chats/?token={token}", port, trusted_port


@pytest.mark.django_db(transaction=True)
def test_the_sockets_own_origin_a_trusted_origin_and_no_origin_may_open_a_socket(lobby):
    url, port, trusted_port = lobby
    assert opens(url, f"http://127.0.0.1:{port}")
    assert opens(url, f"http://trusted.example:{trusted_port}")  # not in ALLOWED_HOSTS, but trusted
    assert opens(url, None)


@pytest.mark.django_db(transaction=True)
def test_a_page_on_another_port_scheme_or_site_is_refused_at_the_handshake(lobby):
    url, port, trusted_port = lobby
    assert not opens(url, f"http://127.0.0.1:{free_port()}")  # same host, another port
    assert not opens(url, f"http://localhost:{port}")  # an allowed host, but not this socket's
    assert not opens(url, f"https://127.0.0.1:{port}")  # another scheme
    assert not opens(url, f"https://trusted.example:{trusted_port}")  # a trusted origin's host, not its scheme
    assert not opens(url, "https://evil.example")
    assert not opens(url, "null")  # a sandboxed frame or a file


@pytest.mark.django_db(transaction=True)
def test_a_path_no_route_matches_is_refused_at_the_handshake_with_403(lobby):
    url, port, _ = lobby
    token = url.partition("?")[2]
    for path in ("/ws/nope/", "/ws/chats", "/ws/chats/a/b/", "/ws/chats/%2F/x/", "/"):
        assert not opens(f"ws://127.0.0.1:{port}{path}?{token}", None), path
    assert opens(url, None)  # and the process goes on serving


# Cases that need settings a test can change in-process: the TLS proxy header and wildcard entries.


async def handshake(headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, "/ws/chats/", headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_behind_the_tls_proxy_the_sockets_own_origin_is_https_on_an_allowed_host(settings, channel_layer):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    proxied = [(b"host", b"chat.example.com"), (b"x-forwarded-proto", b"https")]

    assert await handshake([*proxied, (b"origin", b"https://chat.example.com")])
    assert not await handshake([*proxied, (b"origin", b"http://chat.example.com")])
    assert not await handshake([(b"host", b"chat.example.com"), (b"origin", b"https://chat.example.com")])
    # A host outside ALLOWED_HOSTS has no origin of its own.
    evil = [(b"host", b"evil.example"), (b"x-forwarded-proto", b"https"), (b"origin", b"https://evil.example")]
    assert not await handshake(evil)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_wildcard_trusted_origin_admits_its_subdomains_on_its_scheme(settings, channel_layer):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    host = (b"host", b"chat.internal")
    assert await handshake([host, (b"origin", b"https://app.example.com")])
    assert not await handshake([host, (b"origin", b"http://app.example.com")])
    assert not await handshake([host, (b"origin", b"https://example.org")])
