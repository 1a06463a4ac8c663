"""What the scenarios need before they start: users with tokens, and chats created through the API.

Users are written with the ORM and an unusable password (hashing a thousand passwords would take longer than
the scenarios). A user may hold only CHAT_WS_MAX_SOCKETS_PER_USER sockets, so every subscriber is a user
of its own, as the people in a busy chat are. Chats go through `POST /api/chats/`, the way clients create
them.
"""

from __future__ import annotations

import json
import urllib.request

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from bench.stack import NO_PROXY, Stack


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


def create_chat(stack: Stack, token: str, title: str) -> str:
    request = urllib.request.Request(
        f"{stack.base_url}/api/chats/", json.dumps({"title": title}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Token {token}"}, method="POST",
    )
    with NO_PROXY.open(request, timeout=30) as response:
        return json.load(response)["id"]


def chat_stream_urls(stack: Stack, chat_id: str, tokens: list[str]) -> list[str]:
    return [f"ws://127.0.0.1:{stack.port}/ws/chats/{chat_id}/?token={token}" for token in tokens]
