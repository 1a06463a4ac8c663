"""The one ASGI application every websocket enters: the page's origin, the route, the user, then the consumer.

Channels composes the same steps as a stack: an origin validator, an auth middleware, a `URLRouter` and
`as_asgi()`. Each is a coroutine that stays suspended for as long as its socket is open, and the middleware
and the router each copy the scope to add `user`, `session` and `url_route` to it; an idle chat socket kept
all of them, ~3 KB (issue 13, target 4). Here one coroutine does every step, and what it finds goes to the
consumer as a `Handshake`, which the consumer lets go once the socket is admitted: the consumer's `scope` is
the server's, without `user` or `url_route`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any
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
from django.urls import URLPattern
from django.utils.http import is_same_domain

from chats.live.consumers import CLOSE_TRY_AGAIN, UNAVAILABLE, error_frame
from chats.live.credentials import credential_id
from chats.pipeline.wire import render

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Handshake:
    """What the entry found out before the consumer runs: who connects and with which credential, the route's
    kwargs, the query string's parameters, and when admission gives up (a loop time)."""

    user: Any  # a User, or AnonymousUser
    credential: str = ""  # chats.live.credentials.credential_id of the token or session; "" when anonymous
    token_refused: bool = False  # a ?token= that no active user holds
    route: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)  # blank values kept: "?after_seq=" is no number
    deadline: float | None = None


class WebsocketEntry:
    """Refuses (HTTP 403) a browser page from another origin and a path no route matches; finds the user; runs
    the route's consumer with the `Handshake`.

    The origin rule is Django's CSRF rule (`origin_allowed`). Who connects is the user of `?token=<key>`, else
    the session cookie's (`authenticated`). The socket's admission deadline (CHAT_WS_ADMISSION_SECONDS) starts
    here, as the handshake begins: a client whose user takes too long to look up, or whose database fails, is
    told 1013 and comes back later. The consumer keeps to the same deadline (`Handshake.deadline`).
    """

    def __init__(self, routes: list[URLPattern]):
        self.routes = routes  # django.urls.path(route, consumer class): chats.live.routing

    async def __call__(self, scope, receive, send):
        consumer = await self.consumer_for(scope, receive, send)
        if consumer is not None:  # else the handshake is answered already
            await consumer(scope, receive, send)

    async def consumer_for(self, scope, receive, send):
        """The route's consumer, given its `Handshake`; None once the socket is refused. (A frame of its own: this
        one's locals, the user row among them, end with it, and the consumer drops the handshake once admitted.)"""
        origin = _header(scope, b"origin")
        route = self.route(scope["path"][len(scope.get("root_path", "")):])
        if (origin is not None and not origin_allowed(origin, scope)) or route is None:
            await WebsocketDenier()(scope, receive, send)
            return None
        consumer_class, kwargs = route
        # A byte that is not UTF-8 (percent-encoded: daphne refuses a raw one with 400) reads as U+FFFD, so an
        # unknown token or a bad number, refused as one.
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"), keep_blank_values=True)
        deadline = asyncio.get_running_loop().time() + settings.CHAT_WS_ADMISSION_SECONDS
        try:
            async with asyncio.timeout_at(deadline):
                handshake = await authenticated(scope, query)
        except (TimeoutError, DatabaseError) as error:
            logger.warning("socket refused, its user not found in time (%s)", type(error).__name__)
            await refuse_unavailable(receive, send)
            return None
        handshake.route, handshake.query, handshake.deadline = kwargs, query, deadline
        return consumer_class(handshake)

    def route(self, path: str) -> tuple[type, dict[str, str]] | None:
        """The consumer class of the first route matching `path`, and the route's kwargs."""
        for pattern in self.routes:
            match = pattern.pattern.match(path.lstrip("/"))
            if match:
                return pattern.callback, {**match[2], **pattern.default_args}
        return None


@database_sync_to_async
def user_for_token(key: str):
    """The active user holding this token, else AnonymousUser.

    Admission uses only the user's id, username and `is_active`: the row is loaded with those fields alone (the
    rest deferred), and without the Token instance, which `select_related` would leave cached on the user.
    """
    user_model = get_user_model()
    user = (
        user_model.objects.filter(auth_token__key=key, is_active=True)
        .only(user_model.USERNAME_FIELD, "is_active")
        .first()
    )
    return user if user is not None else AnonymousUser()


async def authenticated(scope, query: dict[str, list[str]]) -> Handshake:
    """The user of `?token=`, else the session cookie's, and the credential that authenticated them.

    A token in the URL is the credential the client chose, so it wins over a session cookie the browser sends
    anyway (a page logged in by token, on a site where the admin is also open); an unknown or revoked one leaves
    the user anonymous and sets `token_refused`, so the consumer closes with 4401 `invalid_token` rather than
    asking for credentials the client did send. Without a token, the user is the session cookie's, as Channels'
    AuthMiddlewareStack finds it. Channels' session middleware saves a changed session on HTTP responses only:
    nothing of it is lost on a websocket.
    """
    # The socket closes when its credential ends (chats.live.credentials).
    keys = [key for key in query.get("token", ()) if key]
    if keys:
        user = await user_for_token(keys[0])
        if not user.is_authenticated:
            return Handshake(user, token_refused=True)
        return Handshake(user, credential_id("token", keys[0]))
    cookies = parse_cookie(_header(scope, b"cookie") or "")
    session = import_module(settings.SESSION_ENGINE).SessionStore(cookies.get(settings.SESSION_COOKIE_NAME))
    user = await get_user({"session": session})
    return Handshake(user, credential_id("session", session.session_key) if user.is_authenticated else "")


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
    """The page's origin is the socket's own (scheme, host and port) or a trusted one: Django's CSRF rule.

    Browsers always send Origin on a websocket handshake, and it is browsers that attach the user's cookie to a
    page's socket (cross-site websocket hijacking). The whole origin counts, as in Django's CSRF check: another
    port or scheme on an allowed host is another site (`http://localhost:9999` may be anyone's dev server). A
    client without an Origin is a script or an app, authenticating itself with ?token= or its own cookie;
    Channels' AllowedHostsOriginValidator would refuse those clients too, and compares hosts only.
    """
    return origin == _own_origin(scope) or _trusted_origin(origin)
