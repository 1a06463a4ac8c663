"""When a credential ends (a session logs out, a token is deleted), the websockets it opened are closed.

Each socket joins a group named after the credential that authenticated it (`credential_group`); ending
the credential sends that group a `credentials.revoked` message, and the consumers close with 4401.
"""

from __future__ import annotations

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

logger = logging.getLogger(__name__)


def credential_group(kind: str, secret: str) -> str:
    """A group name that identifies the credential without carrying it."""
    return f"credential.{kind}.{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


def close_sockets_of(kind: str, secret: str) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(credential_group(kind, secret), {"type": "credentials.revoked"})
    except Exception:
        # Logging out must not fail because Redis is away; the sockets then stay until they reconnect.
        logger.exception("could not close the websockets of a revoked %s", kind)


@receiver(user_logged_out)
def close_session_sockets(sender, request, user, **kwargs) -> None:
    if request is not None and request.session.session_key:
        close_sockets_of("session", request.session.session_key)


@receiver(post_delete, sender=Token)
def close_token_sockets(sender, instance: Token, **kwargs) -> None:
    close_sockets_of("token", instance.key)
