"""The health probe and the OpenAPI document."""

import json
import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.utils import timezone
from rest_framework.test import APIClient

from chats.models import OutboxEvent

pytestmark = pytest.mark.django_db


# --- health ---------------------------------------------------------------------------------------


def health(api=None) -> dict:
    """The designed part of the health body (DESIGN.md: `{status, db, outbox_pending}`); more may follow."""
    response = (api or APIClient()).get("/api/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    return {key: body[key] for key in ("status", "db", "outbox_pending")}


def test_health_answers_without_authentication():
    assert health() == {"status": "ok", "db": "ok", "outbox_pending": 0}


def test_health_ignores_a_bad_token():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert health(api) == {"status": "ok", "db": "ok", "outbox_pending": 0}


def test_outbox_pending_counts_the_unpublished_outbox_rows(client):
    chat = client.post("/api/chats/", {"title": "Lunch"}, format="json").json()
    for text in ["one", "two"]:
        client.post(f"/api/chats/{chat['id']}/messages/", {"text": text}, format="json")

    assert health()["outbox_pending"] == 3

    OutboxEvent.objects.filter(pk=OutboxEvent.objects.order_by("id").first().pk).update(
        published_at=timezone.now()
    )
    assert health()["outbox_pending"] == 2

    client.delete(f"/api/chats/{chat['id']}/")
    assert health()["outbox_pending"] == 3

    OutboxEvent.objects.update(published_at=timezone.now())
    assert health() == {"status": "ok", "db": "ok", "outbox_pending": 0}


# --- schema ---------------------------------------------------------------------------------------

# The HTTP API table of DESIGN.md, with `{id}` as the URL conf names it.
DESIGNED_OPERATIONS = [
    ("post", "/api/auth/register/"),
    ("post", "/api/auth/token/"),
    ("post", "/api/auth/logout/"),  # beyond DESIGN.md: revoking a token closes its sockets (issue: security)
    ("post", "/api/chats/"),
    ("get", "/api/chats/"),
    ("get", "/api/chats/{chat_id}/"),
    ("delete", "/api/chats/{chat_id}/"),
    ("post", "/api/chats/{chat_id}/messages/"),
    ("get", "/api/chats/{chat_id}/messages/"),
    ("patch", "/api/chats/{chat_id}/messages/{seq}/"),
    ("delete", "/api/chats/{chat_id}/messages/{seq}/"),
    ("get", "/api/chats/{chat_id}/members/"),
    ("post", "/api/chats/{chat_id}/members/"),
    ("delete", "/api/chats/{chat_id}/members/{username}/"),
    ("post", "/api/chats/{chat_id}/read/"),
    ("get", "/api/health/"),
]

CHAT_FIELDS = {
    "id", "title", "owner", "created_at", "last_seq", "visibility", "member_count", "version", "membership"
}
MESSAGE_FIELDS = {"id", "chat_id", "seq", "text", "author", "created_at", "edited_at", "deleted", "version"}
MEMBER_FIELDS = {"username", "role", "joined_at", "last_read_seq"}


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        node = schema["components"]["schemas"][name]
    return node


def test_the_schema_is_an_openapi_3_document(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]
    assert isinstance(schema["paths"], dict)


def test_the_schema_lists_exactly_the_designed_api_paths(schema):
    api_paths = {path for path in schema["paths"] if path != "/api/schema/"}

    assert api_paths == {path for _, path in DESIGNED_OPERATIONS}


@pytest.mark.parametrize("method, path", DESIGNED_OPERATIONS)
def test_the_schema_documents_every_designed_operation(schema, method, path):
    assert method in schema["paths"][path]


@pytest.mark.parametrize(
    "method, path, status, fields",
    [
        ("post", "/api/chats/", "201", CHAT_FIELDS),
        ("get", "/api/chats/{chat_id}/", "200", CHAT_FIELDS),
        ("post", "/api/chats/{chat_id}/messages/", "201", MESSAGE_FIELDS),
        ("post", "/api/chats/{chat_id}/messages/", "200", MESSAGE_FIELDS),
        ("patch", "/api/chats/{chat_id}/messages/{seq}/", "200", MESSAGE_FIELDS),
        ("post", "/api/chats/{chat_id}/members/", "201", MEMBER_FIELDS),
        ("post", "/api/chats/{chat_id}/members/", "200", MEMBER_FIELDS),
        ("post", "/api/chats/{chat_id}/read/", "200", {"last_read_seq", "unread"}),
        ("post", "/api/auth/register/", "201", {"username", "token"}),
        ("post", "/api/auth/token/", "200", {"token"}),
    ],
)
def test_the_schema_describes_each_response_as_the_api_sends_it(schema, method, path, status, fields):
    body = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]

    assert set(resolve(schema, body)["properties"]) == fields


def test_the_schema_describes_the_health_body(schema):
    body = schema["paths"]["/api/health/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]

    assert {"status", "db", "outbox_pending"} <= set(resolve(schema, body)["properties"])


@pytest.mark.parametrize(
    "path, item_fields, parameters",
    [
        ("/api/chats/", CHAT_FIELDS, {"search", "member", "cursor", "limit"}),
        ("/api/chats/{chat_id}/messages/", MESSAGE_FIELDS, {"after_seq", "before_seq", "limit"}),
        ("/api/chats/{chat_id}/members/", MEMBER_FIELDS, {"cursor", "limit"}),
    ],
)
def test_the_schema_describes_list_endpoints_as_pages(schema, path, item_fields, parameters):
    operation = schema["paths"][path]["get"]
    page = resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])

    assert page.get("type") == "object", page
    assert set(page["properties"]) == {"results", "next"}
    assert page["properties"]["next"].get("nullable") is True
    assert set(resolve(schema, page["properties"]["results"]["items"])["properties"]) == item_fields
    assert parameters <= {parameter["name"] for parameter in operation.get("parameters", [])}


def test_the_schema_describes_a_messages_edited_at_as_nullable_and_deleted_and_version(schema):
    body = schema["paths"]["/api/chats/{chat_id}/messages/"]["post"]["responses"]["201"]["content"]
    properties = resolve(schema, body["application/json"]["schema"])["properties"]

    assert properties["edited_at"].get("nullable") is True
    assert properties["edited_at"].get("format") == "date-time"
    assert properties["deleted"]["type"] == "boolean"
    assert properties["version"]["type"] == "integer"
    assert properties["created_at"].get("nullable") is not True


def test_the_schema_describes_the_edit_body_and_a_delete_without_one(schema):
    operations = schema["paths"]["/api/chats/{chat_id}/messages/{seq}/"]
    body = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]

    assert set(resolve(schema, body)["properties"]) == {"text"}
    assert "requestBody" not in operations["delete"]
    assert set(operations["delete"]["responses"]) == {"204"}
    assert {parameter["name"] for parameter in operations["patch"]["parameters"] if parameter["in"] == "path"} == {
        "chat_id", "seq"
    }


@pytest.mark.parametrize(
    "method, path, status",
    [("post", "/api/chats/", "201"), ("get", "/api/chats/{chat_id}/", "200")],
)
def test_the_schema_describes_a_chats_membership_as_nullable_with_role_read_position_and_unread(
    schema, method, path, status
):
    body = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    membership = resolve(schema, body)["properties"]["membership"]

    assert membership.get("nullable") is True
    target = membership["allOf"][0] if "allOf" in membership else membership
    assert set(resolve(schema, target)["properties"]) == {"role", "last_read_seq", "unread"}


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/api/chats/", {"title", "visibility"}),
        ("/api/chats/{chat_id}/members/", {"username"}),
        ("/api/chats/{chat_id}/read/", {"seq"}),
    ],
)
def test_the_schema_describes_the_request_bodies_of_the_membership_operations(schema, path, fields):
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    assert set(resolve(schema, body)["properties"]) == fields


def test_the_schema_documents_the_member_filter_of_the_chat_list(schema):
    parameters = schema["paths"]["/api/chats/"]["get"]["parameters"]
    member = next(parameter for parameter in parameters if parameter["name"] == "member")

    assert member["in"] == "query"
    assert member["schema"].get("enum") == ["me"]


@pytest.mark.parametrize(
    "method, path", [("post", "/api/chats/{chat_id}/messages/"), ("patch", "/api/chats/{chat_id}/messages/{seq}/")]
)
def test_the_schema_documents_the_idempotency_key_header(schema, method, path):
    parameters = schema["paths"][path][method]["parameters"]

    assert {"name": "Idempotency-Key", "in": "header"}.items() <= next(
        parameter for parameter in parameters if parameter["name"] == "Idempotency-Key"
    ).items()


@pytest.mark.parametrize(
    "method, path, anonymous",
    [
        ("post", "/api/auth/register/", True),
        ("post", "/api/auth/token/", True),
        ("get", "/api/health/", True),
        ("get", "/api/chats/", False),
        ("delete", "/api/chats/{chat_id}/", False),
        ("post", "/api/chats/{chat_id}/messages/", False),
        ("patch", "/api/chats/{chat_id}/messages/{seq}/", False),
        ("delete", "/api/chats/{chat_id}/messages/{seq}/", False),
        ("get", "/api/chats/{chat_id}/members/", False),
        ("post", "/api/chats/{chat_id}/members/", False),
        ("delete", "/api/chats/{chat_id}/members/{username}/", False),
        ("post", "/api/chats/{chat_id}/read/", False),
    ],
)
def test_the_schema_marks_which_operations_need_authentication(schema, method, path, anonymous):
    security = schema["paths"][path][method].get("security", [])

    assert ({} in security) is anonymous
    if not anonymous:
        assert {"tokenAuth": []} in security


def test_the_swagger_ui_page_is_served():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_the_swagger_ui_page_loads_only_local_files_that_exist():
    """No CDN: the page works offline, from drf-spectacular-sidecar's copy of Swagger UI."""
    page = APIClient().get("/api/docs/").content.decode()
    references = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', page)

    assert re.findall(r'["\'`](?:https?:)?//[^"\'`]*', page) == []  # in attributes and in the inline script
    static = [urlsplit(url).path for url in references if urlsplit(url).path.startswith(settings.STATIC_URL)]
    assert static, references
    missing = [path for path in static if finders.find(path.removeprefix(settings.STATIC_URL)) is None]
    assert missing == [], missing
