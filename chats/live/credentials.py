"""When a credential ends (a session logs out, a token is deleted, an account is deactivated or deleted),
the websockets it opened are closed.

Every socket joins its user's group (`chats.pipeline.wire.user_group`) and remembers which credential
authenticated it (`credential_id`). Ending an account sends that group a `credentials.revoked` message and every
socket of the user closes with 4401; ending one credential sends the same message naming the credential, and
only the sockets it opened close. (Sockets once joined a group per credential as well: one more group and
Redis subscription per socket, ~1 KB of every idle socket in the web process, and a SUBSCRIBE and an UNSUBSCRIBE
per connection, for a message the user group carries as well.)
"""

from __future__ import annotations

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from chats.pipeline.wire import user_group

logger = logging.getLogger(__name__)


def credential_id(kind: str, secret: str) -> str:
    """Identifies the credential without carrying it (it travels through Redis)."""
    return f"{kind}.{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


def close_sockets_of(user_id: int, kind: str, secret: str) -> None:
    """Close the sockets that this credential of this user opened."""
    _revoke(user_id, kind, credential=credential_id(kind, secret))


def _revoke(user_id: int, what: str, reason: str | None = None, credential: str | None = None) -> None:
    """`credentials.revoked` to the user's sockets: those opened with `credential`, or all of them (None)."""
    message = {"type": "credentials.revoked"}
    if reason is not None:
        message["reason"] = reason
    if credential is not None:
        message["credential"] = credential
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), message)
    except Exception:
        # Logging out must not fail because Redis is away; the sockets then stay until they reconnect.
        logger.exception("could not close the websockets of a revoked %s", what)


@receiver(post_save, sender=get_user_model())
def close_sockets_of_deactivated_user(sender, instance, **kwargs) -> None:
    if not instance.is_active:
        transaction.on_commit(lambda: _revoke(instance.pk, "account", "This account was deactivated."))


@receiver(post_delete, sender=get_user_model())
def close_sockets_of_deleted_user(sender, instance, **kwargs) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: _revoke(user_id, "account", "This account was deleted."))


@receiver(user_logged_out)
def close_session_sockets(sender, request, user, **kwargs) -> None:
    # No user: the session was not logged in, so it authenticated no socket.
    if user is not None and request is not None and request.session.session_key:
        close_sockets_of(user.pk, "session", request.session.session_key)


@receiver(post_delete, sender=Token)
def close_token_sockets(sender, instance: Token, **kwargs) -> None:
    close_sockets_of(instance.user_id, "token", instance.key)
