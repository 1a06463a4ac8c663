"""Chats over HTTP: create, list (cursor pages, search), retrieve, delete, and the outbox rows they write."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from chats.models import Chat, Message, OutboxEvent
from tests.api.support import assert_error, walk

pytestmark = pytest.mark.django_db

CHAT_FIELDS = {
    "id", "title", "owner", "created_at", "last_seq", "visibility", "member_count", "version", "membership"
}
OWNER_MEMBERSHIP = {"role": "owner", "last_read_seq": 0, "unread": 0}


def without_membership(chat: dict) -> dict:
    """A chat as event payloads carry it: one payload goes to many users, so no one's `membership`."""
    return {key: value for key, value in chat.items() if key != "membership"}


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


def create_chat(api, title: str) -> dict:
    response = api.post("/api/chats/", {"title": title}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- create ---------------------------------------------------------------------------------------


def test_creating_a_chat_returns_it_with_a_stripped_title(client):
    before = datetime.now(timezone.utc)

    response = client.post("/api/chats/", {"title": "  Lunch plans \n"}, format="json")

    assert response.status_code == 201, response.content
    chat = response.json()
    assert set(chat) == CHAT_FIELDS
    assert uuid.UUID(chat["id"])
    assert chat["title"] == "Lunch plans"
    assert chat["owner"] == "ann"
    assert chat["last_seq"] == 0
    assert chat["visibility"] == "public"
    assert chat["member_count"] == 1
    assert chat["version"] == 0  # nothing has changed in it yet: its creation is no change of content
    assert chat["membership"] == OWNER_MEMBERSHIP
    assert before <= parse_utc(chat["created_at"]) <= datetime.now(timezone.utc)
    row = Chat.objects.get(pk=chat["id"])
    assert (row.title, row.owner.username, row.last_seq, row.visibility, row.member_count, row.version) == (
        "Lunch plans", "ann", 0, "public", 1, 0
    )


@pytest.mark.parametrize("title", ["x" * 255, "  " + "x" * 255 + "  ", "é" * 255, "a"])
def test_a_title_of_1_to_255_characters_after_stripping_is_accepted(client, title):
    chat = create_chat(client, title)

    assert chat["title"] == title.strip()


@pytest.mark.parametrize(
    "first, second",
    [("Lunch", "Lunch"), ("Lunch", "LUNCH"), ("Lunch", "  lunch  "), ("Straße", "STRASSE")],
)
def test_a_title_taken_in_any_case_is_refused(client, bob_client, first, second):
    create_chat(client, first)

    response = bob_client.post("/api/chats/", {"title": second}, format="json")

    assert_error(response, 400, "chat_title_taken")
    assert Chat.objects.count() == 1
    assert OutboxEvent.objects.count() == 1


def test_a_title_is_free_again_once_its_chat_is_deleted(client):
    chat = create_chat(client, "Lunch")
    assert client.delete(f"/api/chats/{chat['id']}/").status_code == 204

    again = create_chat(client, "LUNCH")

    assert again["id"] != chat["id"]


# --- list -----------------------------------------------------------------------------------------


def test_the_list_is_newest_first(client, bob_client):
    titles = ["first", "second", "third", "fourth"]
    for n, title in enumerate(titles):
        create_chat(client if n % 2 else bob_client, title)

    response = client.get("/api/chats/")

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [chat["title"] for chat in body["results"]] == list(reversed(titles))
    assert all(set(chat) == CHAT_FIELDS for chat in body["results"])
    assert {chat["owner"] for chat in body["results"]} == {"ann", "bob"}


def test_an_empty_list_is_one_empty_page(client):
    assert client.get("/api/chats/").json() == {"results": [], "next": None}


@pytest.mark.parametrize("count, limit", [(7, 3), (6, 3), (5, 1), (4, 10)])
def test_following_next_visits_every_chat_exactly_once_newest_first(client, count, limit):
    created = [create_chat(client, f"chat {n}")["id"] for n in range(count)]

    pages = walk(client, f"/api/chats/?limit={limit}")

    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    seen = [chat["id"] for page in pages for chat in page]
    assert seen == list(reversed(created))


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5"])
def test_a_limit_outside_1_to_200_on_the_chat_list_is_invalid_limit(client, limit):
    create_chat(client, "Lunch plans")

    assert_error(client.get("/api/chats/", {"limit": limit}), 400, "invalid_limit")


def test_a_limit_of_200_on_the_chat_list_is_one_page(client):
    create_chat(client, "Lunch plans")

    assert client.get("/api/chats/", {"limit": "200"}).json()["next"] is None


def test_a_chat_created_while_paging_does_not_repeat_or_skip_older_chats(client):
    created = [create_chat(client, f"chat {n}")["id"] for n in range(5)]
    first = client.get("/api/chats/?limit=2").json()

    create_chat(client, "newcomer")
    rest = walk(client, first["next"])

    seen = [chat["id"] for chat in first["results"]] + [chat["id"] for page in rest for chat in page]
    assert seen == list(reversed(created))


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage", id="not-base64"),
        pytest.param("bz0tMQ==", id="negative-offset"),
        pytest.param("cD0yMDI2", id="position-2026"),
        pytest.param("cD1ub3QtYS1kYXRl", id="position-not-a-date"),
    ],
)
def test_a_forged_cursor_is_refused_with_the_error_shape(client, cursor):
    create_chat(client, "Lunch")
    client.raise_request_exception = False  # see the answer a real client would get

    response = client.get("/api/chats/", {"cursor": cursor})

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "search, expected",
    [
        ("lunch", ["Lunchbox", "Team LUNCH", "lunch plans"]),
        ("LUNCH", ["Lunchbox", "Team LUNCH", "lunch plans"]),
        ("box", ["Lunchbox"]),
        ("unc", ["Lunchbox", "Team LUNCH", "lunch plans"]),
        ("dinner", []),
        ("", ["Lunchbox", "Breakfast", "Team LUNCH", "lunch plans"]),
    ],
)
def test_search_finds_titles_containing_the_term_in_any_case(client, search, expected):
    for title in ["lunch plans", "Team LUNCH", "Breakfast", "Lunchbox"]:
        create_chat(client, title)

    response = client.get("/api/chats/", {"search": search})

    assert response.status_code == 200
    assert [chat["title"] for chat in response.json()["results"]] == expected


def test_search_results_are_paged_and_next_keeps_the_search(client):
    for n in range(5):
        create_chat(client, f"lunch {n}")
        create_chat(client, f"dinner {n}")

    pages = walk(client, "/api/chats/?search=LUNCH&limit=2")

    titles = [chat["title"] for page in pages for chat in page]
    assert titles == [f"lunch {n}" for n in reversed(range(5))]


# --- retrieve -------------------------------------------------------------------------------------


def test_a_chat_is_retrieved_as_it_was_created(client, bob_client):
    chat = create_chat(client, "Lunch")

    mine = client.get(f"/api/chats/{chat['id']}/")
    theirs = bob_client.get(f"/api/chats/{chat['id']}/")

    assert mine.status_code == theirs.status_code == 200
    assert mine.json() == chat
    assert theirs.json() == {**chat, "membership": None}  # bob sees the same chat, as a non-member


def test_a_retrieved_chat_shows_its_last_seq(client):
    chat = create_chat(client, "Lunch")
    for text in ["one", "two"]:
        client.post(f"/api/chats/{chat['id']}/messages/", {"text": text}, format="json")

    assert client.get(f"/api/chats/{chat['id']}/").json()["last_seq"] == 2


def test_a_chat_shows_its_version_in_the_detail_and_in_the_list(client, bob_client):
    chat = create_chat(client, "Lunch")
    url = f"/api/chats/{chat['id']}/messages/"
    assert client.post(url, {"text": "one"}, format="json").status_code == 201  # 1
    assert bob_client.post(url, {"text": "two"}, format="json").status_code == 201  # 2 (bob joins), 3
    assert client.patch(f"{url}1/", {"text": "one!"}, format="json").status_code == 200  # 4
    assert bob_client.delete(f"{url}2/").status_code == 204  # 5
    read = client.post(f"/api/chats/{chat['id']}/read/", {"seq": 2}, format="json")  # a read position: no change
    assert read.status_code == 200, read.content

    detail = client.get(f"/api/chats/{chat['id']}/").json()
    [listed] = client.get("/api/chats/").json()["results"]

    assert (detail["version"], detail["last_seq"], detail["member_count"]) == (5, 2, 2)
    assert listed == detail
    assert Chat.objects.get(pk=chat["id"]).version == 5


UNKNOWN_IDS = [
    str(uuid.uuid4()),
    "not-a-uuid",
    "12345",
    "00000000-0000-0000-0000-00000000000g",
    "00000000-0000-0000-0000-0000000000000",
]


@pytest.mark.parametrize("chat_id", UNKNOWN_IDS)
@pytest.mark.parametrize("method", ["get", "delete"])
def test_an_unknown_or_malformed_chat_id_is_chat_not_found(client, method, chat_id):
    create_chat(client, "Lunch")
    outbox_before = OutboxEvent.objects.count()

    response = getattr(client, method)(f"/api/chats/{chat_id}/")

    assert_error(response, 404, "chat_not_found")
    assert Chat.objects.count() == 1
    assert OutboxEvent.objects.count() == outbox_before


# --- delete ---------------------------------------------------------------------------------------


def test_the_owner_deletes_a_chat_and_its_messages(client, outbox):
    chat = create_chat(client, "Lunch")
    client.post(f"/api/chats/{chat['id']}/messages/", {"text": "hi"}, format="json")

    response = client.delete(f"/api/chats/{chat['id']}/")

    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(f"/api/chats/{chat['id']}/"), 404, "chat_not_found")
    assert_error(client.delete(f"/api/chats/{chat['id']}/"), 404, "chat_not_found")
    assert not Chat.objects.exists()
    assert not Message.objects.exists()
    assert [envelope["event_type"] for envelope in outbox()] == [
        "chat.created",
        "message.created",
        "chat.deleted",
    ]


def test_staff_may_delete_someone_elses_chat(client, make_user, make_client, outbox):
    chat = create_chat(client, "Lunch")
    moderator = make_client(make_user("mod", is_staff=True))

    response = moderator.delete(f"/api/chats/{chat['id']}/")

    assert response.status_code == 204
    assert not Chat.objects.filter(pk=chat["id"]).exists()
    assert outbox()[-1]["event_type"] == "chat.deleted"


def test_another_user_may_not_delete_a_chat(client, bob_client, outbox):
    chat = create_chat(client, "Lunch")
    client.post(f"/api/chats/{chat['id']}/messages/", {"text": "hi"}, format="json")
    before = outbox()

    response = bob_client.delete(f"/api/chats/{chat['id']}/")

    assert_error(response, 403, "permission_denied")
    assert client.get(f"/api/chats/{chat['id']}/").status_code == 200
    assert Message.objects.filter(chat_id=chat["id"]).count() == 1
    assert outbox() == before


# --- outbox ---------------------------------------------------------------------------------------


def assert_envelope(
    envelope: dict, event_type: str, chat_id: str, payload: dict, user_ids: list[int] | None = None,
    version: int | None = None,
) -> None:
    """`user_ids` (None: absent) names the users an event is for, when it is not for every lobby; `version`
    (None: absent) the chat's version the change made (chat.created 0, chat.deleted the chat's last)."""
    # request_id, optional, names the HTTP request that committed the event (for the logs)
    designed = {"event_id", "event_type", "occurred_at", "chat_id", "payload"}
    designed |= {"user_ids"} if user_ids is not None else set()
    designed |= {"version"} if version is not None else set()
    assert set(envelope) - {"request_id"} == designed
    assert envelope.get("user_ids") == user_ids
    assert envelope.get("version") == version
    assert str(uuid.UUID(envelope["event_id"])) == envelope["event_id"]
    assert envelope["event_type"] == event_type
    parse_utc(envelope["occurred_at"])
    assert envelope["chat_id"] == chat_id
    assert envelope["payload"] == payload


def test_each_change_writes_exactly_one_outbox_row_with_the_designed_envelope(client, bob, bob_client, outbox):
    started = datetime.now(timezone.utc)
    chat = create_chat(client, "Lunch")
    first = client.post(f"/api/chats/{chat['id']}/messages/", {"text": "hi"}, format="json").json()
    # bob's first post in ann's public chat makes him a member: member.joined, then his message
    second = bob_client.post(f"/api/chats/{chat['id']}/messages/", {"text": "hello"}, format="json").json()
    bob_member = next(
        member for member in client.get(f"/api/chats/{chat['id']}/members/").json()["results"]
        if member["username"] == "bob"
    )
    chat_before_delete = client.get(f"/api/chats/{chat['id']}/").json()
    client.get("/api/chats/")  # reads write nothing
    client.delete(f"/api/chats/{chat['id']}/")

    envelopes = outbox()

    assert [envelope["event_type"] for envelope in envelopes] == [
        "chat.created", "message.created", "member.joined", "message.created", "chat.deleted"
    ]
    assert_envelope(envelopes[0], "chat.created", chat["id"], without_membership(chat), version=0)
    assert_envelope(envelopes[1], "message.created", chat["id"], first, version=1)
    assert first["version"] == 1 and second["version"] == 3
    # bob has read up to his own message; he joined after ann's, with nothing unread: the event says so
    assert bob_member == {"username": "bob", "role": "member", "joined_at": bob_member["joined_at"],
                          "last_read_seq": 2}
    bob_when_he_joined = {**bob_member, "last_read_seq": 1}
    # joining by posting is a change of its own: version 2, between the two messages (1 and 3)
    chat_when_bob_joined = {**without_membership(chat), "last_seq": 1, "member_count": 2, "version": 2}
    assert_envelope(
        envelopes[2], "member.joined", chat["id"],
        {"chat_id": chat["id"], "member": bob_when_he_joined, "chat": chat_when_bob_joined}, user_ids=[bob.pk],
        version=2,
    )
    assert_envelope(envelopes[3], "message.created", chat["id"], second, version=3)
    assert_envelope(envelopes[4], "chat.deleted", chat["id"], without_membership(chat_before_delete), version=3)
    assert (chat_before_delete["last_seq"], chat_before_delete["member_count"], chat_before_delete["version"]) == (
        2, 2, 3
    )
    assert len({envelope["event_id"] for envelope in envelopes}) == 5
    moments = [parse_utc(envelope["occurred_at"]) for envelope in envelopes]
    assert started <= moments[0] and moments == sorted(moments)


def test_outbox_columns_agree_with_the_envelope_and_start_unpublished(client):
    chat = create_chat(client, "Lunch")
    client.post(f"/api/chats/{chat['id']}/messages/", {"text": "hi"}, format="json")

    rows = list(OutboxEvent.objects.order_by("id"))

    assert [row.event_type for row in rows] == ["chat.created", "message.created"]
    for row in rows:
        assert str(row.event_id) == row.envelope["event_id"]
        assert row.event_type == row.envelope["event_type"]
        assert str(row.chat_id) == row.envelope["chat_id"] == chat["id"]
        assert row.published_at is None
