"""What the scenarios need before they start: users with tokens, and chats created through the API.

Users are written with the ORM and an unusable password (hashing a thousand passwords would take longer than
the scenarios). A user may hold only CHAT_WS_MAX_SOCKETS_PER_USER sockets, so every subscriber is a user
of its own, as the people in a busy chat are. Chats go through `POST /api/chats/`, the way clients create
them; the crowd of a big chat (`add_members`) is bulk-inserted, as a database would hold it after people joined
over time, with no events (nothing listens for them in the bench).
"""

from __future__ import annotations

import json
import urllib.request

from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone
from rest_framework.authtoken.models import Token

from bench.stack import NO_PROXY, Stack
from chats.models import Chat, Membership


def token_for(username: str) -> str:
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"password": "!"})
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def tokens_for(prefix: str, count: int) -> list[str]:
    """Tokens of `count` new users named <prefix>-0, <prefix>-1, ..."""
    User = get_user_model()
    names = [f"{prefix}-{i}" for i in range(count)]
    User.objects.bulk_create([User(username=name, password="!") for name in names])
    users = User.objects.filter(username__in=names)
    tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=user) for user in users])
    return [token.key for token in tokens]


def users_for(prefix: str, count: int) -> list[int]:
    """Ids of `count` new users named <prefix>-0, <prefix>-1, ..., without tokens (members who never connect)."""
    User = get_user_model()
    names = [f"{prefix}-{i}" for i in range(count)]
    User.objects.bulk_create([User(username=name, password="!") for name in names])
    return list(User.objects.filter(username__in=names).values_list("pk", flat=True))


def add_members(chat_ids: list[str], user_ids: list[int]) -> None:
    """Makes every user a plain member of every chat, joined now, with nothing unread (the chats are new),
    and counts them in each chat's member_count. The ORM's bulk insert: 32,000 rows in a few seconds,
    where the API would take minutes and write an event per member."""
    now = timezone.now()
    Membership.objects.bulk_create(
        [Membership(chat_id=chat_id, user_id=user_id, role="member", joined_at=now, last_read_seq=0)
         for chat_id in chat_ids for user_id in user_ids],
        batch_size=2000,
    )
    Chat.objects.filter(pk__in=chat_ids).update(member_count=F("member_count") + len(user_ids))


def create_chat(stack: Stack, token: str, title: str) -> str:
    request = urllib.request.Request(
        f"{stack.base_url}/api/chats/", json.dumps({"title": title}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Token {token}"}, method="POST",
    )
    with NO_PROXY.open(request, timeout=30) as response:
        return json.load(response)["id"]


def chat_stream_urls(stack: Stack, chat_id: str, tokens: list[str], batch: bool = False) -> list[str]:
    return [f"ws://127.0.0.1:{stack.port}/ws/chats/{chat_id}/?token={token}{'&batch=1' if batch else ''}"
            for token in tokens]
