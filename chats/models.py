"""Persistence for the chat domain: rows, not behaviour. Writes go through `chats.adapters`."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Chat(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=255)
    # Title.key (case-folded), unique in the database so concurrent creates cannot both win.
    # Case folding can lengthen a string ("ß" -> "ss"), hence the wider column.
    title_key = models.CharField(max_length=1024, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="chats")
    created_at = models.DateTimeField()
    last_seq = models.PositiveIntegerField(default=0)
    visibility = models.CharField(
        max_length=8, choices=[("public", "public"), ("private", "private")], default="public"
    )
    # Kept by the commands under the chat's row lock, so a list of chats never counts member rows.
    member_count = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=0)  # messaging_domain.entities: one per change of content

    class Meta:
        indexes = [models.Index(fields=["-created_at", "-id"], name="chat_newest_first")]

    def __str__(self) -> str:
        return self.title


class Membership(models.Model):
    """A user in a chat, with their role and read position. Rows change through the mediator only."""

    id = models.BigAutoField(primary_key=True)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=[("owner", "owner"), ("member", "member")], default="member")
    joined_at = models.DateTimeField()
    last_read_seq = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chat", "user"], name="membership_unique_per_chat")]
        # (chat, user) is the unique index; this one finds a user's chats (?member=me, visibility).
        indexes = [models.Index(fields=["user", "chat"], name="membership_by_user")]

    def __str__(self) -> str:
        return f"{self.user.get_username()} in {self.chat}"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    text = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages")
    created_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    version = models.PositiveIntegerField(default=0)  # the chat's version at this message's latest change
    created_version = models.PositiveIntegerField(default=0)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted = models.BooleanField(default=False)  # a tombstone: text "" and the seq kept

    class Meta:
        indexes = [models.Index(fields=["chat", "version"], name="message_by_version")]
        constraints = [
            models.UniqueConstraint(fields=["chat", "seq"], name="message_seq_unique_per_chat"),
            models.UniqueConstraint(
                fields=["author", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="message_idempotency_key_unique_per_author",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chat_id} #{self.seq}"


class MemberChange(models.Model):
    """The latest membership change of each user in each chat (joined or left), with the chat's version at it:
    what `?after_version=` replays of memberships. A member's row in `Membership` is gone once they leave;
    this one stays (it names the user by id and username, so it outlives the account too)."""

    id = models.BigAutoField(primary_key=True)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="member_changes")
    user_id = models.BigIntegerField()
    username = models.CharField(max_length=150)
    role = models.CharField(max_length=8)
    joined_at = models.DateTimeField()
    last_read_seq = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField()
    left = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chat", "user_id"], name="member_change_unique_per_chat")]
        indexes = [models.Index(fields=["chat", "version"], name="member_change_by_version")]


class MessageEditKey(models.Model):
    """An edit sent with an Idempotency-Key: its repeat is answered with the message, not applied again."""

    id = models.BigAutoField(primary_key=True)
    editor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    chat_id = models.UUIDField()
    seq = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["editor", "key"], name="edit_key_unique_per_editor")]


class OutboxEvent(models.Model):
    """One domain event, written in the transaction that caused it; `relay_outbox` sends it to Kafka.

    Rows are sent in `id` order. `chat_id` is a plain column, not a foreign key: the row must outlive the
    chat (a `chat.deleted` event is written as its chat disappears).
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    chat_id = models.UUIDField()
    envelope = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # A row Kafka refuses for what it is (e.g. too large) is parked here instead of blocking the rows
    # behind it; `relay_outbox --retry-failed` puts parked rows back in the queue.
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    PENDING = Q(published_at__isnull=True, failed_at__isnull=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"], condition=Q(published_at__isnull=True, failed_at__isnull=True), name="outbox_pending"
            ),
            models.Index(fields=["published_at"], condition=Q(published_at__isnull=False), name="outbox_published"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
