"""The limits a public chat needs: credentials that end close their sockets, sizes, rates, caps, settings."""

import os
import secrets
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from chats.adapters import participant_of
from chats.api.throttling import RegisterRateThrottle
from chats.bootstrap import mediator
from messaging_domain.commands import CreateChatCommand
from tests.api.support import assert_error
from tests.conftest import PROJECT_ROOT
from tests.websocket.test_consumers import assert_closed_with, connect


@pytest.fixture
def chat(ann):
    return mediator.handle_command(CreateChatCommand(title="Lunch", owner=participant_of(ann)))


async def open_socket(path: str, headers=None) -> WebsocketCommunicator:
    """An open socket; a chat stream's first frame (its presence) already read."""
    return await connect(path, headers=headers)


async def assert_pong(communicator) -> None:
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}


@pytest.mark.parametrize("path", ["/ws/chats/", "/ws/chats/{chat}/"])
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_logging_out_with_a_token_closes_the_sockets_it_opened_and_no_others(path, ann, chat, channel_layer, client):
    token = await sync_to_async(Token.objects.get)(user=ann)  # the `client` fixture's token
    await sync_to_async(client.force_login)(ann)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    doomed = await open_socket(path.format(chat=chat.id) + f"?token={token.key}")
    survivor = await open_socket(path.format(chat=chat.id), headers=[(b"cookie", cookie)])  # ann's session

    assert (await sync_to_async(client.post)("/api/auth/logout/")).status_code == 204  # by token

    await assert_closed_with(doomed, 4401, "credentials_revoked")
    await assert_pong(survivor)
    assert not await sync_to_async(Token.objects.filter(key=token.key).exists)()
    await survivor.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_logging_out_a_session_closes_the_sockets_it_opened(ann, chat, channel_layer, client):
    await sync_to_async(client.force_login)(ann)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = await open_socket(f"/ws/chats/{chat.id}/", headers=[(b"cookie", cookie)])
    await assert_pong(communicator)

    client.credentials()  # the session, not the token, authenticates the logout
    assert (await sync_to_async(client.post)("/api/auth/logout/")).status_code == 204

    await assert_closed_with(communicator, 4401, "credentials_revoked")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_deleting_a_token_anywhere_closes_its_sockets(ann, channel_layer):
    token = await sync_to_async(Token.objects.create)(user=ann)
    communicator = await open_socket(f"/ws/chats/?token={token.key}")
    await sync_to_async(Token.objects.filter(key=token.key).delete)()  # as the admin's delete action does
    await assert_closed_with(communicator, 4401, "credentials_revoked")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_frame_over_the_size_limit_closes_the_socket_with_1009(ann, chat, channel_layer, settings):
    token = await sync_to_async(Token.objects.create)(user=ann)
    communicator = await open_socket(f"/ws/chats/{chat.id}/?token={token.key}")
    await communicator.send_to(text_data='{"type": "ping", "pad": "' + "é" * settings.CHAT_WS_MAX_FRAME_BYTES + '"}')
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_inbound_frames_is_cut_off_with_4429(ann, chat, channel_layer, settings):
    settings.CHAT_WS_FRAME_BURST = 5
    settings.CHAT_WS_FRAMES_PER_SECOND = 0.01
    token = await sync_to_async(Token.objects.create)(user=ann)
    communicator = await open_socket(f"/ws/chats/{chat.id}/?token={token.key}")
    for _ in range(5):
        await assert_pong(communicator)
    await communicator.send_json_to({"type": "ping"})
    await assert_closed_with(communicator, 4429, "rate_limited")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_user_holds_at_most_the_configured_number_of_sockets(ann, chat, channel_layer, settings):
    settings.CHAT_WS_MAX_SOCKETS_PER_USER = 2
    token = await sync_to_async(Token.objects.create)(user=ann)
    first = await open_socket(f"/ws/chats/?token={token.key}")
    second = await open_socket(f"/ws/chats/{chat.id}/?token={token.key}")
    third = await open_socket(f"/ws/chats/?token={token.key}")
    await assert_closed_with(third, 4429, "too_many_sockets")

    await first.disconnect()
    fourth = await open_socket(f"/ws/chats/?token={token.key}")
    await assert_pong(fourth)
    await assert_pong(second)
    await fourth.disconnect()
    await second.disconnect()


@pytest.mark.django_db
def test_registrations_are_throttled_per_client_ip(make_client, monkeypatch):
    monkeypatch.setattr(RegisterRateThrottle, "THROTTLE_RATES", {"register": "2/hour"})
    api = make_client()
    for n in range(2):
        body = {"username": f"user{n}", "password": "a long passphrase 7"}
        assert api.post("/api/auth/register/", body, format="json").status_code == 201
    refused = api.post("/api/auth/register/", {"username": "user3", "password": "a long passphrase 7"}, format="json")
    assert_error(refused, 429, "throttled")
    assert refused["Retry-After"]
    other_ip = api.post(
        "/api/auth/register/", {"username": "user4", "password": "a long passphrase 7"}, format="json",
        REMOTE_ADDR="10.0.0.9",
    )
    assert other_ip.status_code == 201


@pytest.mark.django_db
def test_owner_author_seq_and_ids_cannot_be_assigned_by_the_client(client, ann, make_user):
    make_user("bob")
    chat = client.post(
        "/api/chats/",
        {"title": "Lunch", "owner": "bob", "id": "00000000-0000-4000-8000-000000000000", "last_seq": 99,
         "created_at": "2000-01-01T00:00:00Z"},
        format="json",
    ).json()
    assert (chat["owner"], chat["last_seq"]) == ("ann", 0)
    assert chat["id"] != "00000000-0000-4000-8000-000000000000" and not chat["created_at"].startswith("2000")

    message = client.post(
        f"/api/chats/{chat['id']}/messages/",
        {"text": "hi", "author": "bob", "seq": 42, "chat_id": "00000000-0000-4000-8000-000000000000",
         "id": "00000000-0000-4000-8000-000000000001"},
        format="json",
    ).json()
    assert (message["author"], message["seq"], message["chat_id"]) == ("ann", 1, chat["id"])
    assert message["id"] != "00000000-0000-4000-8000-000000000001"


def run_deploy_check(**env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "DATABASE_URL": "sqlite:////tmp/deploy-check.sqlite3"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT, env={**base, **env}, capture_output=True, text=True,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = run_deploy_check(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_HTTPS="1", DJANGO_ALLOWED_HOSTS="chat.example.com"
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "env, warning",
    [
        ({"DJANGO_HTTPS": "1"}, "security.W009"),  # the local fallback secret key
        ({"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}, "security.W004"),  # no HSTS without DJANGO_HTTPS
        ({"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_HTTPS": "1", "DJANGO_DEBUG": "1"}, "security.W018"),
    ],
)
def test_check_deploy_flags_what_production_must_not_run_with(env, warning):
    result = run_deploy_check(**env)
    assert result.returncode != 0
    assert warning in result.stderr


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_token_in_the_url_wins_over_a_session_cookie_and_its_revocation_closes_the_socket(
    ann, make_user, channel_layer, client
):
    bob = await sync_to_async(make_user)("bob")
    bobs_token = await sync_to_async(Token.objects.create)(user=bob)
    await sync_to_async(client.force_login)(ann)  # the browser also holds ann's session cookie
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = await open_socket(f"/ws/chats/?token={bobs_token.key}", headers=[(b"cookie", cookie)])
    # Revoking bob's token closes it, which it would not if ann's session had authenticated it.
    await sync_to_async(bobs_token.delete)()
    await assert_closed_with(communicator, 4401, "credentials_revoked")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_bad_token_in_the_url_is_refused_even_with_a_session_cookie(ann, channel_layer, client):
    await sync_to_async(client.force_login)(ann)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = await open_socket("/ws/chats/?token=revoked-long-ago", headers=[(b"cookie", cookie)])
    await assert_closed_with(communicator, 4401, "invalid_token")


@pytest.mark.django_db
def test_a_browser_holding_a_session_cookie_can_still_register_and_get_a_token(ann):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(ann)
    body = {"username": "carol", "password": "a long passphrase 7"}
    assert browser.post("/api/auth/register/", body, format="json").status_code == 201
    assert browser.post("/api/auth/token/", body, format="json").status_code == 200
