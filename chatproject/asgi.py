"""ASGI entrypoint for daphne: HTTP goes to Django; websockets to the Channels consumers.

A browser page may open a socket only from the socket's own origin (scheme, host and port) or one in
CSRF_TRUSTED_ORIGINS, so a page elsewhere cannot open one with the user's cookie; clients that send no
Origin, like scripts with ?token=, go on to authenticate (chats.live.entry).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# Imported after Django is set up: they load models.
from channels.routing import ProtocolTypeRouter  # noqa: E402

from chats.live.entry import WebsocketEntry  # noqa: E402
from chats.live.routing import websocket_urlpatterns  # noqa: E402
from chats.runtime.django_handler import OneThreadASGIHandler  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": OneThreadASGIHandler(),
        "websocket": WebsocketEntry(websocket_urlpatterns),
    }
)
