"""Websocket middleware: who is connecting (`?token=`), and from which page (Origin)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


@database_sync_to_async
def user_for_token(key: str):
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """`?token=<key>` for clients that cannot send a session cookie.

    Runs inside Channels' AuthMiddlewareStack. A token in the URL is the credential the client chose, so it
    wins over a session cookie the browser sends anyway (a page logged in by token, on a site where the
    admin is also open); an invalid one leaves the user anonymous, and the consumer closes with 4401.
    """

    async def __call__(self, scope, receive, send):
        keys = parse_qs(scope.get("query_string", b"").decode()).get("token")
        if keys:
            user = await user_for_token(keys[0])
            # Remembered so the socket closes when this token is revoked (chats.signals).
            scope = dict(scope, user=user, auth_token=keys[0]) if user.is_authenticated else dict(scope, user=user)
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Refuses a browser page from a host outside ALLOWED_HOSTS; lets clients without an Origin through.

    Browsers always send Origin on a websocket handshake, and it is browsers that attach the user's cookie
    to a page's socket (cross-site websocket hijacking). A client without an Origin is a script or an app,
    authenticating itself with ?token= or its own cookie. Channels' AllowedHostsOriginValidator would
    refuse those clients too.
    """

    def __init__(self, application):
        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)
