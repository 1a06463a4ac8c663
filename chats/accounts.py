"""When an account is deleted, it leaves its chats through the mediator first, so that member counts stay
true and each chat's members see `member.left` (the database alone would drop the rows silently).

A user who owns a chat cannot be deleted at all (`Chat.owner` is PROTECT), so leaving never meets the
owner's rule. A deactivated account keeps its memberships (it may come back); it cannot authenticate, so
they grant nothing meanwhile, and its sockets are closed (`chats.live.credentials`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from chats import models
from chats.adapters import participant_of
from chats.bootstrap import mediator
from messaging_domain.commands import RemoveMemberCommand


@receiver(pre_delete, sender=get_user_model())
def leave_chats_of_deleted_user(sender, instance, **kwargs) -> None:
    user = participant_of(instance)
    for chat_id in models.Membership.objects.filter(user_id=instance.pk).values_list("chat_id", flat=True):
        mediator.handle_command(RemoveMemberCommand(chat_id=chat_id, username=user.username, requested_by=user))
