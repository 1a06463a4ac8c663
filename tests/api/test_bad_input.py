"""Whatever a client sends, a refusal has the one error shape and changes nothing.

Every case checks `{"error": {"code", "message"}}` and that chats, messages and the outbox are untouched.
"""

import json

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from chats.api import throttling
from chats.api.throttling import WriteRateThrottle
from tests.api.support import assert_error, database_state

pytestmark = pytest.mark.django_db

MAX_LENGTH = {"title": 255, "text": 4096}


@pytest.fixture
def chat(client) -> dict:
    """A chat with one message, so that 'unchanged' is checked against non-empty tables."""
    created = client.post("/api/chats/", {"title": "Lunch"}, format="json").json()
    client.post(f"/api/chats/{created['id']}/messages/", {"text": "hi"}, format="json")
    return created


@pytest.fixture
def url_for(chat):
    urls = {"title": "/api/chats/", "text": f"/api/chats/{chat['id']}/messages/"}
    return urls.__getitem__


def post_raw(api, url: str, body, content_type: str = "application/json"):
    return api.generic("POST", url, body, content_type=content_type)


def both_fields(*cases) -> list:
    """Each (id, value-or-factory) case once for the title and once for the text."""
    return [
        pytest.param(field, value(max_length) if callable(value) else value, id=f"{field}-{case_id}")
        for field, max_length in MAX_LENGTH.items()
        for case_id, value in cases
    ]


# --- values the domain refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    both_fields(
        ("empty", ""),
        ("space", " "),
        ("whitespace", " \t\n\r "),
        ("too-long", lambda n: "x" * (n + 1)),
        ("too-long-inside-spaces", lambda n: "  " + "x" * (n + 1) + "  "),
        ("far-too-long", lambda n: "x" * (n * 2)),
    ),
)
def test_an_empty_blank_or_overlong_value_is_refused(client, url_for, field, value):
    before = database_state()

    response = client.post(url_for(field), {field: value}, format="json")

    assert_error(response, 400, f"invalid_{field}")
    assert database_state() == before


@pytest.mark.parametrize(
    "field, value",
    both_fields(
        ("number", 42),
        ("float", 4.2),
        ("true", True),
        ("false", False),
        ("null", None),
        ("list", ["Lunch"]),
        ("empty-list", []),
        ("object", {"value": "Lunch"}),
    ),
)
def test_a_value_that_is_not_a_json_string_is_refused(client, url_for, field, value):
    before = database_state()

    response = client.post(url_for(field), {field: value}, format="json")

    assert_error(response, 400, f"invalid_{field}")
    assert database_state() == before


@pytest.mark.parametrize("field", MAX_LENGTH)
@pytest.mark.parametrize("body", [{}, {"name": "Lunch"}, {"TITLE": "x", "Text": "x"}], ids=["empty", "other", "case"])
def test_a_missing_field_is_refused(client, url_for, field, body):
    before = database_state()

    response = client.post(url_for(field), body, format="json")

    assert_error(response, 400, f"invalid_{field}")
    assert database_state() == before


@pytest.mark.parametrize("field", MAX_LENGTH)
@pytest.mark.parametrize("body", ['["Lunch"]', '"Lunch"', "42", "true", "null", "[]", '""'])
def test_a_json_body_that_is_not_an_object_is_an_invalid_request(client, url_for, field, body):
    before = database_state()

    response = post_raw(client, url_for(field), body)

    assert_error(response, 400, "invalid_request")
    assert database_state() == before


@pytest.mark.parametrize("field", MAX_LENGTH)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"title": "Lunch", "text": "hi"', id="truncated"),
        pytest.param("{'title': 'Lunch', 'text': 'hi'}", id="single-quotes"),
        pytest.param("title=Lunch&text=hi", id="form-encoded"),
        pytest.param('{"title": NaN, "text": NaN}', id="nan"),
        pytest.param(b'{"title": "\xff\xfe", "text": "\xff\xfe"}', id="not-utf8"),
        pytest.param("not json", id="words"),
    ],
)
def test_a_body_that_is_not_json_is_a_parse_error(client, url_for, field, body):
    before = database_state()

    response = post_raw(client, url_for(field), body)

    assert_error(response, 400, "parse_error")
    assert database_state() == before


# --- the edit endpoint (PATCH /api/chats/{id}/messages/{seq}/) ------------------------------------


def patch_raw(api, chat: dict, body, content_type: str = "application/json", seq: str = "1"):
    return api.generic("PATCH", f"/api/chats/{chat['id']}/messages/{seq}/", body, content_type=content_type)


@pytest.mark.parametrize("body", ['["hi"]', '"hi"', "42", "true", "null", "[]", '""'])
def test_an_edit_whose_json_body_is_not_an_object_is_an_invalid_request(client, chat, body):
    before = database_state()

    response = patch_raw(client, chat, body)

    assert_error(response, 400, "invalid_request")
    assert database_state() == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"text": "hi"', id="truncated"),
        pytest.param("{'text': 'hi'}", id="single-quotes"),
        pytest.param("text=hi", id="form-encoded"),
        pytest.param('{"text": NaN}', id="nan"),
        pytest.param(b'{"text": "\xff\xfe"}', id="not-utf8"),
    ],
)
def test_an_edit_whose_body_is_not_json_is_a_parse_error(client, chat, body):
    before = database_state()

    response = patch_raw(client, chat, body)

    assert_error(response, 400, "parse_error")
    assert database_state() == before


@pytest.mark.parametrize("body", ["{}", '{"Text": "x"}', '{"message": "x"}'], ids=["empty", "case", "other"])
def test_an_edit_without_a_text_is_invalid_text(client, chat, body):
    before = database_state()

    assert_error(patch_raw(client, chat, body), 400, "invalid_text")
    assert database_state() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/csv", "application/octet-stream"])
def test_an_edit_in_an_unsupported_content_type_is_refused_with_415(client, chat, content_type):
    before = database_state()

    response = patch_raw(client, chat, "text=edited", content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert database_state() == before


def test_an_edit_over_the_upload_limit_is_refused_with_413(client, chat):
    before = database_state()

    response = patch_raw(client, chat, json.dumps({"text": "edited", "padding": oversized()}))

    assert_error(response, 413, "request_too_large")
    assert database_state() == before


# --- the member and read endpoints ---------------------------------------------------------------

MEMBERSHIP_ENDPOINTS = ["members/", "read/"]


@pytest.fixture
def joined_chat(chat, bob_client) -> dict:
    """The chat with bob a member too, so that a refused read or join has a position and a member to keep."""
    assert bob_client.post(f"/api/chats/{chat['id']}/members/", {}, format="json").status_code == 201
    return chat


@pytest.mark.parametrize("endpoint", MEMBERSHIP_ENDPOINTS)
@pytest.mark.parametrize("body", ['["bob"]', '[{"seq": 1}]', '"bob"', "42", "true", "null", "[]", '""'])
def test_a_json_body_that_is_not_an_object_is_an_invalid_request_on_members_and_read(
    bob_client, joined_chat, endpoint, body
):
    before = database_state()

    response = post_raw(bob_client, f"/api/chats/{joined_chat['id']}/{endpoint}", body)

    assert_error(response, 400, "invalid_request")
    assert database_state() == before


@pytest.mark.parametrize("endpoint", MEMBERSHIP_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"username": "bob", "seq": 1', id="truncated"),
        pytest.param("{'username': 'bob', 'seq': 1}", id="single-quotes"),
        pytest.param('{"seq": NaN}', id="nan"),
        pytest.param('{"seq": Infinity}', id="infinity"),
        pytest.param(b'{"username": "\xff\xfe"}', id="not-utf8"),
    ],
)
def test_a_body_that_is_not_json_is_a_parse_error_on_members_and_read(bob_client, joined_chat, endpoint, body):
    before = database_state()

    response = post_raw(bob_client, f"/api/chats/{joined_chat['id']}/{endpoint}", body)

    assert_error(response, 400, "parse_error")
    assert database_state() == before


@pytest.mark.parametrize("endpoint", MEMBERSHIP_ENDPOINTS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
def test_an_unsupported_content_type_on_members_and_read_is_refused_with_415(
    bob_client, joined_chat, endpoint, content_type
):
    before = database_state()

    response = post_raw(bob_client, f"/api/chats/{joined_chat['id']}/{endpoint}", "seq=1", content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert database_state() == before


@pytest.mark.parametrize("endpoint", MEMBERSHIP_ENDPOINTS)
def test_a_body_over_the_upload_limit_on_members_and_read_is_refused_with_413(bob_client, joined_chat, endpoint):
    before = database_state()
    body = json.dumps({"username": "bob", "seq": 1, "padding": oversized()})

    response = post_raw(bob_client, f"/api/chats/{joined_chat['id']}/{endpoint}", body)

    assert_error(response, 413, "request_too_large")
    assert database_state() == before


# --- bodies, media types, methods, URLs -----------------------------------------------------------


def oversized() -> str:
    return "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)


@pytest.mark.parametrize("field", MAX_LENGTH)
@pytest.mark.parametrize(
    "content_type, encode",
    [
        pytest.param(
            "application/json",
            lambda field, padding: json.dumps({field: "Hello", "padding": padding}),
            id="json-with-padding",
        ),
        pytest.param(
            "application/json",
            lambda field, padding: json.dumps({field: padding}),
            id="json-huge-value",
        ),
        pytest.param(
            "application/x-www-form-urlencoded",
            lambda field, padding: f"{field}=Hello&padding={padding}",
            id="form",
        ),
    ],
)
def test_a_body_over_the_upload_limit_is_refused_with_413(client, url_for, field, content_type, encode):
    before = database_state()

    response = post_raw(client, url_for(field), encode(field, oversized()), content_type=content_type)

    assert_error(response, 413, "request_too_large")
    assert database_state() == before


def test_an_oversized_registration_is_refused_with_413():
    before = get_user_model().objects.count()
    body = json.dumps({"username": "zoe", "password": "violet-harbour-lantern-42", "padding": oversized()})

    response = post_raw(APIClient(), "/api/auth/register/", body)

    assert_error(response, 413, "request_too_large")
    assert get_user_model().objects.count() == before


@pytest.mark.parametrize("field", MAX_LENGTH)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/csv", "application/octet-stream"])
def test_an_unsupported_content_type_is_refused_with_415(client, url_for, field, content_type):
    before = database_state()

    response = post_raw(client, url_for(field), "Hello", content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert database_state() == before


WRONG_METHODS = [
    ("put", "/api/chats/"),
    ("patch", "/api/chats/"),
    ("delete", "/api/chats/"),
    ("post", "/api/chats/{id}/"),
    ("put", "/api/chats/{id}/"),
    ("patch", "/api/chats/{id}/"),
    ("put", "/api/chats/{id}/messages/"),
    ("patch", "/api/chats/{id}/messages/"),
    ("delete", "/api/chats/{id}/messages/"),
    # a message is edited (PATCH) and deleted, never read alone (the pages are) nor replaced
    ("get", "/api/chats/{id}/messages/1/"),
    ("post", "/api/chats/{id}/messages/1/"),
    ("put", "/api/chats/{id}/messages/1/"),
    ("get", "/api/chats/{id}/messages/extra/"),
    ("put", "/api/chats/{id}/messages/99/"),
    ("put", "/api/chats/{id}/members/"),
    ("patch", "/api/chats/{id}/members/"),
    ("delete", "/api/chats/{id}/members/"),
    ("get", "/api/chats/{id}/members/ann/"),
    ("post", "/api/chats/{id}/members/ann/"),
    ("put", "/api/chats/{id}/members/ann/"),
    ("patch", "/api/chats/{id}/members/ann/"),
    ("get", "/api/chats/{id}/read/"),
    ("put", "/api/chats/{id}/read/"),
    ("patch", "/api/chats/{id}/read/"),
    ("delete", "/api/chats/{id}/read/"),
    ("get", "/api/auth/register/"),
    ("get", "/api/auth/token/"),
    ("delete", "/api/auth/token/"),
    ("post", "/api/health/"),
    ("delete", "/api/health/"),
]


@pytest.mark.parametrize("method, path", WRONG_METHODS)
def test_a_wrong_method_is_refused_with_405(client, chat, method, path):
    before = database_state()

    response = getattr(client, method)(path.format(id=chat["id"]), {"title": "Dinner", "text": "x"}, format="json")

    assert_error(response, 405, "method_not_allowed")
    assert method.upper() not in response["Allow"]
    assert database_state() == before


UNKNOWN_URLS = [
    "/api/",
    "/api/nope/",
    "/api/chat/",
    "/api/auth/",
    "/api/chats/{id}/nope/",
    "/api/chats/{id}/messages/1/extra/",
    "/api/chats/{id}/messages/1/2/",
    "/api/chats/{id}/members/ann/extra/",
    "/api/chats/{id}/members/ann/bob/",
    "/api/chats/{id}/read/1/",
    "/api/chats/{id}/read/extra/",
]


@pytest.mark.parametrize("path", UNKNOWN_URLS)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "anonymous"])
def test_an_unknown_url_under_api_is_a_json_404_with_debug_off(
    settings, client, chat, path, method, authenticated
):
    settings.DEBUG = False
    api = client if authenticated else APIClient()
    before = database_state()

    response = getattr(api, method)(path.format(id=chat["id"]), {"title": "Dinner"}, format="json")

    assert_error(response, 404, "not_found")
    assert database_state() == before


# --- throttling -----------------------------------------------------------------------------------


@pytest.fixture
def three_writes_a_minute(monkeypatch):
    # DRF copies the rates onto the throttle class when it is defined, so the settings fixture cannot reach them.
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"writes": "3/minute"})
    # The windows are fixed: a test that crossed the end of one would get a fresh budget halfway (it did, on a
    # loaded machine). A frozen clock keeps every request of a test in one window.
    monkeypatch.setattr(throttling, "clock", lambda: 1_800_000_000.0)


def test_the_fourth_write_in_a_minute_is_throttled(three_writes_a_minute, client):
    created = [client.post("/api/chats/", {"title": f"chat {n}"}, format="json") for n in range(3)]
    assert [response.status_code for response in created] == [201, 201, 201]
    before = database_state()

    response = client.post("/api/chats/", {"title": "one too many"}, format="json")

    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert database_state() == before


def test_writes_of_every_kind_share_one_budget(three_writes_a_minute, client):
    chat = client.post("/api/chats/", {"title": "Lunch"}, format="json").json()
    client.post(f"/api/chats/{chat['id']}/messages/", {"text": "one"}, format="json")
    client.post(f"/api/chats/{chat['id']}/messages/", {"text": "two"}, format="json")
    before = database_state()

    response = client.delete(f"/api/chats/{chat['id']}/")

    assert_error(response, 429, "throttled")
    assert "Retry-After" in response
    assert database_state() == before


def test_joining_reading_and_leaving_spend_the_write_budget_too(three_writes_a_minute, chat, bob_client):
    members = f"/api/chats/{chat['id']}/members/"
    spent = [
        bob_client.post(members, {}, format="json"),
        bob_client.post(f"/api/chats/{chat['id']}/read/", {"seq": 1}, format="json"),
        bob_client.delete(f"{members}bob/"),
    ]
    assert [response.status_code for response in spent] == [201, 200, 204]
    before = database_state()

    response = bob_client.post(members, {}, format="json")

    assert_error(response, 429, "throttled")
    assert database_state() == before


def test_editing_and_deleting_messages_spend_the_write_budget_too(three_writes_a_minute, client):
    chat = client.post("/api/chats/", {"title": "Lunch"}, format="json").json()
    messages = f"/api/chats/{chat['id']}/messages/"
    spent = [
        client.post(messages, {"text": "one"}, format="json"),
        client.patch(f"{messages}1/", {"text": "one!"}, format="json"),
    ]
    assert [response.status_code for response in spent] == [201, 200]
    before = database_state()

    edit = client.patch(f"{messages}1/", {"text": "one?"}, format="json")
    delete = client.delete(f"{messages}1/")

    assert_error(edit, 429, "throttled")
    assert_error(delete, 429, "throttled")
    assert database_state() == before


def test_reads_are_not_throttled(three_writes_a_minute, client):
    chat = client.post("/api/chats/", {"title": "Lunch"}, format="json").json()
    for n in range(3):
        client.post(f"/api/chats/{chat['id']}/messages/", {"text": f"msg {n}"}, format="json")
    assert client.post("/api/chats/", {"title": "Dinner"}, format="json").status_code == 429

    reads = [
        client.get(url)
        for url in [
            "/api/chats/",
            f"/api/chats/{chat['id']}/",
            f"/api/chats/{chat['id']}/messages/",
            f"/api/chats/{chat['id']}/members/",
        ]
        * 4
    ]

    assert [response.status_code for response in reads] == [200] * 16


def test_anonymous_attempts_at_the_token_endpoint_are_throttled_too(three_writes_a_minute, ann):
    attempts = [
        APIClient().post("/api/auth/token/", {"username": "ann", "password": f"guess-{n}"}, format="json")
        for n in range(3)
    ]
    assert [response.status_code for response in attempts] == [400, 400, 400]

    response = APIClient().post("/api/auth/token/", {"username": "ann", "password": "s3cret-pass-word"}, format="json")

    assert_error(response, 429, "throttled")
    assert "Retry-After" in response


def test_the_write_budget_is_per_user(three_writes_a_minute, client, make_user, make_client):
    for n in range(4):
        client.post("/api/chats/", {"title": f"chat {n}"}, format="json")
    bob = make_client(make_user("bob"))

    response = bob.post("/api/chats/", {"title": "Bob's"}, format="json")

    assert response.status_code == 201, response.content
