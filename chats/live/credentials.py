"""When a credential ends (a session logs out, a token is deleted, an account is deactivated or deleted),
the websockets it opened are closed.

Each socket joins a group named after the credential that authenticated it (`credential_group`), and its
user's group (`chats.pipeline.wire.user_group`); ending the credential or the account sends that group a
`credentials.revoked` message, and the consumers close with 4401.
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


def credential_group(kind: str, secret: str) -> str:
    """A group name that identifies the credential without carrying it."""
    return f"credential.{kind}.{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


def close_sockets_of(kind: str, secret: str) -> None:
    _revoke(credential_group(kind, secret), kind)


def _revoke(group: str, what: str, reason: str | None = None) -> None:
    message = {"type": "credentials.revoked"}
    if reason is not None:
        message["reason"] = reason
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except Exception:
        # Logging out must not fail because Redis is away; the sockets then stay until they reconnect.
        logger.exception("could not close the websockets of a revoked %s", what)


@receiver(post_save, sender=get_user_model())
def close_sockets_of_deactivated_user(sender, instance, **kwargs) -> None:
    if not instance.is_active:
        transaction.on_commit(lambda: _revoke(user_group(instance.pk), "account", "This account was deactivated."))


@receiver(post_delete, sender=get_user_model())
def close_sockets_of_deleted_user(sender, instance, **kwargs) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: _revoke(user_group(user_id), "account", "This account was deleted."))


@receiver(user_logged_out)
def close_session_sockets(sender, request, user, **kwargs) -> None:
    if request is not None and request.session.session_key:
        close_sockets_of("session", request.session.session_key)


@receiver(post_delete, sender=Token)
def close_token_sockets(sender, instance: Token, **kwargs) -> None:
    close_sockets_of("token", instance.key)
