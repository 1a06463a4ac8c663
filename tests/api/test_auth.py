"""Registration, tokens, and who may call what: token auth, session auth, and the 401s in between."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chats.models import Chat, Message, OutboxEvent
from tests.api.support import assert_error

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "violet-harbour-lantern-42"


def register(payload, **extra):
    return APIClient().post("/api/auth/register/", payload, format="json", **extra)


# --- register -------------------------------------------------------------------------------------


def test_registering_returns_the_username_and_a_token_that_authenticates():
    response = register({"username": "zoe", "password": STRONG_PASSWORD})

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"username", "token"}
    assert body["username"] == "zoe"
    user = get_user_model().objects.get(username="zoe")
    assert Token.objects.get(user=user).key == body["token"]
    assert user.check_password(STRONG_PASSWORD)

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    created = api.post("/api/chats/", {"title": "Zoe's chat"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["owner"] == "zoe"


@pytest.mark.parametrize("username", ["ann", "ANN", "Ann"])
def test_a_taken_username_is_refused_in_any_case(ann, username):
    users_before = get_user_model().objects.count()

    response = register({"username": username, "password": STRONG_PASSWORD})

    assert_error(response, 400, "invalid_username")
    assert get_user_model().objects.count() == users_before


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("password", id="common"),
        pytest.param("83729164", id="numeric"),
        pytest.param("x7$Kq", id="too-short"),
        pytest.param("harrington1", id="like-the-username"),
    ],
)
def test_a_weak_password_is_refused_and_no_user_is_created(password):
    response = register({"username": "harrington", "password": password})

    assert_error(response, 400, "invalid_password")
    assert not get_user_model().objects.filter(username="harrington").exists()


@pytest.mark.parametrize(
    "payload, code",
    [
        ({}, "invalid_username"),
        ({"password": STRONG_PASSWORD}, "invalid_username"),
        ({"username": "zoe"}, "invalid_password"),
        ({"username": "", "password": STRONG_PASSWORD}, "invalid_username"),
        ({"username": "zoe smith", "password": STRONG_PASSWORD}, "invalid_username"),
        ({"username": "zoe", "password": ""}, "invalid_password"),
    ],
)
def test_a_missing_or_malformed_field_is_refused(payload, code):
    response = register(payload)

    assert_error(response, 400, code)
    assert get_user_model().objects.count() == 0


@pytest.mark.parametrize("body", ['{"username": "zoe", ', "username=zoe&password=x", "not json at all"])
def test_a_register_body_that_is_not_json_is_a_parse_error(body):
    response = APIClient().post("/api/auth/register/", body, content_type="application/json")

    assert_error(response, 400, "parse_error")
    assert get_user_model().objects.count() == 0


# --- token ----------------------------------------------------------------------------------------


def test_the_token_endpoint_returns_the_users_token_for_the_right_password(ann):
    response = APIClient().post(
        "/api/auth/token/", {"username": "ann", "password": "s3cret-pass-word"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"token": Token.objects.get(user=ann).key}


def test_the_token_endpoint_returns_the_same_token_as_registration():
    registered = register({"username": "zoe", "password": STRONG_PASSWORD}).json()

    response = APIClient().post(
        "/api/auth/token/", {"username": "zoe", "password": STRONG_PASSWORD}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"token": registered["token"]}


@pytest.mark.parametrize(
    "username, password",
    [("ann", "not-her-password"), ("nobody", "s3cret-pass-word"), ("ANN", "s3cret-pass-word")],
)
def test_wrong_credentials_are_refused_with_invalid_credentials(ann, username, password):
    response = APIClient().post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )

    assert_error(response, 400, "invalid_credentials")
    assert not Token.objects.exists()


@pytest.mark.parametrize("payload", [{}, {"username": "ann"}, {"password": "s3cret-pass-word"}])
def test_the_token_endpoint_refuses_missing_fields(ann, payload):
    response = APIClient().post("/api/auth/token/", payload, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] in {"invalid_username", "invalid_password"}


# --- who may call what ----------------------------------------------------------------------------

PROTECTED = [
    ("get", "/api/chats/", None),
    ("post", "/api/chats/", {"title": "Sneaky"}),
    ("get", "/api/chats/{chat}/", None),
    ("delete", "/api/chats/{chat}/", None),
    ("get", "/api/chats/{chat}/messages/", None),
    ("post", "/api/chats/{chat}/messages/", {"text": "sneaky"}),
]


@pytest.fixture
def chat_id(client):
    response = client.post("/api/chats/", {"title": "Private"}, format="json")
    assert response.status_code == 201
    return response.json()["id"]


def counts():
    return Chat.objects.count(), Message.objects.count(), OutboxEvent.objects.count()


@pytest.mark.parametrize("method, path, payload", PROTECTED)
def test_an_anonymous_request_to_a_protected_endpoint_is_refused_with_401(chat_id, method, path, payload):
    before = counts()

    response = getattr(APIClient(), method)(path.format(chat=chat_id), payload, format="json")

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert counts() == before


@pytest.mark.parametrize("method, path, payload", PROTECTED)
@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token ", "Token a b"])
def test_a_bad_token_is_refused_with_401(chat_id, method, path, payload, header):
    before = counts()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)

    response = getattr(api, method)(path.format(chat=chat_id), payload, format="json")

    assert_error(response, 401, "authentication_failed")
    assert counts() == before


@pytest.mark.parametrize("header", ["Bearer {key}", "{key}", "token{key}"])
def test_a_token_under_another_scheme_counts_as_no_credentials(ann, header):
    key = Token.objects.create(user=ann).key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header.format(key=key))

    assert_error(api.get("/api/chats/"), 401, "not_authenticated")


def test_a_deleted_token_no_longer_authenticates(client, ann):
    Token.objects.filter(user=ann).delete()

    assert_error(client.get("/api/chats/"), 401, "authentication_failed")


def test_a_token_of_an_inactive_user_is_refused(client, ann):
    ann.is_active = False
    ann.save()

    assert_error(client.get("/api/chats/"), 401, "authentication_failed")


# --- session auth and the browsable API -----------------------------------------------------------


def test_a_session_logged_in_with_force_login_sees_the_browsable_api(ann):
    browser = Client()
    browser.force_login(ann)

    response = browser.get("/api/chats/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<html" in response.content.lower()


def test_a_session_logged_in_with_a_password_can_read_chats_as_json(client, ann):
    client.post("/api/chats/", {"title": "Lunch"}, format="json")
    browser = Client()
    assert browser.login(username="ann", password="s3cret-pass-word")

    response = browser.get("/api/chats/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert [chat["title"] for chat in response.json()["results"]] == ["Lunch"]


def test_the_browsable_api_login_page_logs_a_user_in(ann):
    browser = Client()

    response = browser.post(
        "/api-auth/login/", {"username": "ann", "password": "s3cret-pass-word", "next": "/api/chats/"}
    )

    assert response.status_code == 302
    assert browser.get("/api/chats/", HTTP_ACCEPT="text/html").status_code == 200


def test_a_session_write_without_a_csrf_token_is_refused(ann):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ann)

    response = browser.post("/api/chats/", {"title": "Forged"}, content_type="application/json")

    assert_error(response, 403, "permission_denied")
    assert not Chat.objects.exists()
    assert not OutboxEvent.objects.exists()
