"""Websocket middleware: who is connecting (`?token=`), and from which page (Origin)."""

from __future__ import annotations

import asyncio
import logging
from importlib import import_module
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from chats.live.consumers import CLOSE_TRY_AGAIN, UNAVAILABLE, error_frame
from chats.pipeline.wire import render

logger = logging.getLogger(__name__)


@database_sync_to_async
def user_for_token(key: str):
    """The active user holding this token, else AnonymousUser.

    A socket keeps its user for as long as it is open, and uses only its id and username: the row is loaded
    with those fields alone (the rest deferred), and without the Token instance, which `select_related`
    would leave cached on the user (a few hundred bytes per open socket, for nothing).
    """
    user_model = get_user_model()
    user = (
        user_model.objects.filter(auth_token__key=key, is_active=True)
        .only(user_model.USERNAME_FIELD, "is_active")
        .first()
    )
    return user if user is not None else AnonymousUser()


class SocketAuthMiddleware:
    """Who is connecting: the user of `?token=<key>`, for clients that cannot send a session cookie, else the
    session cookie's, as Channels' AuthMiddlewareStack finds it (`scope["session"]` is there either way).

    A token in the URL is the credential the client chose, so it wins over a session cookie the browser sends
    anyway (a page logged in by token, on a site where the admin is also open); an unknown or revoked one leaves
    the user anonymous and sets `token_refused`, so the consumer closes with 4401 `invalid_token` rather than
    asking for credentials the client did send.

    One middleware instead of Channels' stack of four (cookies, session, auth, then the token): each of those
    copies the scope and keeps a coroutine frame alive for as long as the socket is open, ~4 KB of every idle
    socket. Channels' session middleware saves a changed session on HTTP responses only: nothing of it is
    lost on a websocket.

    The socket's admission deadline (CHAT_WS_ADMISSION_SECONDS) starts here, and the consumer keeps to the same
    one (`admission_deadline` in the scope): a client whose user takes too long to look up is told 1013 too.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        deadline = asyncio.get_running_loop().time() + settings.CHAT_WS_ADMISSION_SECONDS
        try:
            async with asyncio.timeout_at(deadline):
                scope = await authenticated(scope, deadline)  # the frame keeps no more than it must
        except (TimeoutError, DatabaseError) as error:
            logger.warning("socket refused, its user not found in time (%s)", type(error).__name__)
            return await refuse_unavailable(receive, send)
        return await self.inner(scope, receive, send)


async def authenticated(scope, deadline: float) -> dict:
    """A copy of `scope` with `session` and `user`, `auth_token` or `token_refused` for a `?token=`, and the
    admission deadline."""
    cookies = parse_cookie(_header(scope, b"cookie") or "")
    session = import_module(settings.SESSION_ENGINE).SessionStore(cookies.get(settings.SESSION_COOKIE_NAME))
    scope = dict(scope, session=session, admission_deadline=deadline)
    keys = parse_qs(scope.get("query_string", b"").decode()).get("token")
    if not keys:
        scope["user"] = await get_user(scope)
        return scope
    scope["user"] = await user_for_token(keys[0])
    if scope["user"].is_authenticated:
        scope["auth_token"] = keys[0]  # the socket closes when this token is revoked (chats.live.credentials)
    else:
        scope["token_refused"] = True
    return scope


async def refuse_unavailable(receive, send) -> None:
    """Answer the handshake as a consumer refusing it would: an `unavailable` error frame and close 1013."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": render(error_frame("unavailable", UNAVAILABLE))})
    await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _is_secure(scope) -> bool:
    """As Django's `request.is_secure()`: the TLS proxy's header when it is configured and present, else wss."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        value = _header(scope, meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1"))
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def _own_origin(scope) -> str | None:
    """`http(s)://` + the Host header, if that host is in ALLOWED_HOSTS (as Django's `request.get_host()`)."""
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        host = "{}:{}".format(*scope["server"])
    domain, _ = split_domain_port(host or "")
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


def _trusted_origin(origin: str) -> bool:
    """Listed in CSRF_TRUSTED_ORIGINS, exactly or under a `scheme://*.domain` entry, as Django's CSRF check reads it."""
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, pattern.netloc.lstrip("*"))
        for pattern in (urlsplit(entry) for entry in trusted if "*" in entry)
        if pattern.scheme == parsed.scheme
    )


def origin_allowed(origin: str, scope) -> bool:
    """The page's origin is the socket's own (scheme, host and port) or a trusted one: Django's CSRF rule."""
    return origin == _own_origin(scope) or _trusted_origin(origin)


class BrowserOriginValidator:
    """Refuses (403) a browser page from another origin; lets clients without an Origin through.

    Browsers always send Origin on a websocket handshake, and it is browsers that attach the user's cookie
    to a page's socket (cross-site websocket hijacking). The whole origin counts, as in Django's CSRF check:
    another port or scheme on an allowed host is another site (`http://localhost:9999` may be anyone's
    dev server). A client without an Origin is a script or an app, authenticating itself with ?token= or
    its own cookie; Channels' AllowedHostsOriginValidator would refuse those clients too, and compares
    hosts only.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        origin = _header(scope, b"origin")
        if origin is None or origin_allowed(origin, scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
