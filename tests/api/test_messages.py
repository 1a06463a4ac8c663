"""Messages over HTTP: posting (seq, Idempotency-Key) and reading pages by seq in both directions."""

import uuid
from datetime import datetime, timedelta

import pytest

from chats.models import Chat, Message, OutboxEvent
from tests.api.support import assert_error

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {"id", "chat_id", "seq", "text", "author", "created_at", "edited_at", "deleted", "version"}


@pytest.fixture
def chat(client) -> dict:
    response = client.post("/api/chats/", {"title": "Lunch"}, format="json")
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def messages_url(chat) -> str:
    return f"/api/chats/{chat['id']}/messages/"


def post(api, url: str, text: str, key: str | None = None):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post(url, {"text": text}, format="json", **headers)


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [message["seq"] for message in response.json()["results"]]


def message_events():
    return list(OutboxEvent.objects.filter(event_type="message.created").order_by("id"))


# --- post -----------------------------------------------------------------------------------------


def test_posting_returns_the_message_with_a_stripped_text(client, chat, messages_url):
    response = post(client, messages_url, "  hello there \n")

    assert response.status_code == 201, response.content
    message = response.json()
    assert set(message) == MESSAGE_FIELDS
    assert uuid.UUID(message["id"])
    assert message["chat_id"] == chat["id"]
    assert message["seq"] == 1
    assert message["text"] == "hello there"
    assert message["author"] == "ann"
    assert datetime.fromisoformat(message["created_at"]).utcoffset() == timedelta(0)
    assert (message["edited_at"], message["deleted"], message["version"]) == (None, False, 1)
    row = Message.objects.get(pk=message["id"])
    assert (row.text, row.edited_at, row.deleted, row.version, row.created_version) == (
        "hello there", None, False, 1, 1
    )


def test_seqs_count_1_2_3_across_authors_and_the_chat_keeps_the_last(client, bob_client, chat, messages_url):
    posted = [post(api, messages_url, f"msg {n}") for n, api in enumerate([client, bob_client, client])]

    assert [response.status_code for response in posted] == [201, 201, 201]
    assert [response.json()["seq"] for response in posted] == [1, 2, 3]
    # bob's first post makes him a member first: a change of its own, version 2
    assert [response.json()["version"] for response in posted] == [1, 3, 4]
    assert [response.json()["author"] for response in posted] == ["ann", "bob", "ann"]
    assert client.get(f"/api/chats/{chat['id']}/").json()["last_seq"] == 3


def test_every_chat_counts_its_own_seqs(client, messages_url):
    other = client.post("/api/chats/", {"title": "Dinner"}, format="json").json()
    post(client, messages_url, "one")
    post(client, messages_url, "two")

    response = post(client, f"/api/chats/{other['id']}/messages/", "first")

    assert response.json()["seq"] == 1


@pytest.mark.parametrize("text", ["x" * 4096, "  " + "x" * 4096 + "\n", "a", "ünïcödé ✓"])
def test_a_text_of_1_to_4096_characters_after_stripping_is_accepted(client, messages_url, text):
    response = post(client, messages_url, text)

    assert response.status_code == 201, response.content
    assert response.json()["text"] == text.strip()


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_same_message(client, chat, messages_url):
    first = post(client, messages_url, "hello", key="key-1")

    again = post(client, messages_url, "hello", key="key-1")

    assert first.status_code == 201
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert Message.objects.count() == 1
    assert len(message_events()) == 1
    assert client.get(f"/api/chats/{chat['id']}/").json()["last_seq"] == 1
    assert client.get(f"/api/chats/{chat['id']}/").json()["version"] == 1  # a replay changes nothing


def test_a_repeated_key_after_other_messages_still_returns_the_original(client, messages_url):
    first = post(client, messages_url, "hello", key="key-1").json()
    post(client, messages_url, "in between")

    again = post(client, messages_url, "hello", key="key-1")

    assert again.status_code == 200
    assert again.json() == first
    assert seqs(client.get(messages_url)) == [1, 2]


def test_a_repeated_key_matches_the_text_after_stripping(client, messages_url):
    first = post(client, messages_url, "hello", key="key-1")

    again = post(client, messages_url, "  hello \n", key="key-1")

    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert len(message_events()) == 1


def test_a_255_character_key_is_accepted_and_replayed(client, messages_url):
    first = post(client, messages_url, "hello", key="k" * 255)

    again = post(client, messages_url, "hello", key="k" * 255)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


def test_a_key_reused_with_a_different_text_is_a_conflict(client, messages_url):
    post(client, messages_url, "hello", key="key-1")

    response = post(client, messages_url, "goodbye", key="key-1")

    assert_error(response, 409, "idempotency_key_reused")
    assert list(Message.objects.values_list("text", flat=True)) == ["hello"]
    assert len(message_events()) == 1


def test_a_key_reused_on_another_chat_is_a_conflict(client, messages_url):
    other = client.post("/api/chats/", {"title": "Dinner"}, format="json").json()
    post(client, messages_url, "hello", key="key-1")

    response = post(client, f"/api/chats/{other['id']}/messages/", "hello", key="key-1")

    assert_error(response, 409, "idempotency_key_reused")
    assert Message.objects.count() == 1
    assert Chat.objects.get(pk=other["id"]).last_seq == 0


def test_another_user_with_the_same_key_posts_a_new_message(client, bob_client, messages_url):
    mine = post(client, messages_url, "hello", key="key-1")

    theirs = post(bob_client, messages_url, "hello", key="key-1")

    assert theirs.status_code == 201, theirs.content
    assert theirs.json()["id"] != mine.json()["id"]
    assert (theirs.json()["author"], theirs.json()["seq"]) == ("bob", 2)
    assert len(message_events()) == 2


def test_posts_without_a_key_are_never_deduplicated(client, messages_url):
    first = post(client, messages_url, "hello")
    second = post(client, messages_url, "hello")

    assert (first.status_code, second.status_code) == (201, 201)
    assert [first.json()["seq"], second.json()["seq"]] == [1, 2]


@pytest.mark.parametrize("key", ["k" * 256, "", "   "], ids=["overlong", "empty", "blank"])
def test_an_idempotency_key_that_is_not_1_to_255_characters_is_refused(client, messages_url, key):
    response = post(client, messages_url, "hello", key=key)

    assert_error(response, 400, "invalid_idempotency_key")
    assert not Message.objects.exists()
    assert not message_events()


# --- list -----------------------------------------------------------------------------------------


@pytest.fixture
def five(client, messages_url) -> list[dict]:
    return [post(client, messages_url, f"msg {n}").json() for n in range(1, 6)]


def test_the_list_starts_at_seq_1_ascending_by_default(client, messages_url, five):
    response = client.get(messages_url)

    assert seqs(response) == [1, 2, 3, 4, 5]
    assert response.json()["next"] is None
    assert response.json()["results"] == five


def test_an_empty_chat_has_one_empty_page(client, messages_url):
    assert client.get(messages_url).json() == {"results": [], "next": None}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("after_seq=0", [1, 2, 3, 4, 5]),
        ("after_seq=2", [3, 4, 5]),
        ("after_seq=5", []),
        ("after_seq=99", []),
        ("before_seq=4", [3, 2, 1]),
        ("before_seq=6", [5, 4, 3, 2, 1]),
        ("before_seq=1", []),
        ("limit=2", [1, 2]),
        ("after_seq=1&limit=2", [2, 3]),
        ("before_seq=5&limit=2", [4, 3]),
        ("limit=200", [1, 2, 3, 4, 5]),
        ("after_seq=99999999999999999999", []),
        ("before_seq=99999999999999999999", [5, 4, 3, 2, 1]),
    ],
)
def test_after_seq_reads_ascending_and_before_seq_descending(client, messages_url, five, query, expected):
    assert seqs(client.get(f"{messages_url}?{query}")) == expected


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5"])
def test_a_limit_outside_1_to_200_is_invalid_limit(client, messages_url, five, limit):
    assert_error(client.get(messages_url, {"limit": limit}), 400, "invalid_limit")


@pytest.mark.parametrize(
    "query, code",
    [
        ("after_seq=-1", "invalid_after_seq"),
        ("after_seq=abc", "invalid_after_seq"),
        ("before_seq=0", "invalid_before_seq"),
        ("before_seq=x", "invalid_before_seq"),
    ],
)
def test_a_malformed_seq_is_refused(client, messages_url, five, query, code):
    assert_error(client.get(f"{messages_url}?{query}"), 400, code)


def test_after_seq_and_before_seq_together_are_refused(client, messages_url, five):
    assert_error(client.get(f"{messages_url}?after_seq=1&before_seq=4"), 400)


def walk(api, url: str) -> list[list[int]]:
    pages = []
    while url is not None:
        response = api.get(url)
        pages.append(seqs(response))
        url = response.json()["next"]
        assert len(pages) < 100, "next never became null"
    return pages


@pytest.mark.parametrize(
    "count, limit, ascending, descending",
    [
        (7, 3, [[1, 2, 3], [4, 5, 6], [7]], [[7, 6, 5], [4, 3, 2], [1]]),
        (6, 3, [[1, 2, 3], [4, 5, 6]], [[6, 5, 4], [3, 2, 1]]),
        (3, 1, [[1], [2], [3]], [[3], [2], [1]]),
        (2, 5, [[1, 2]], [[2, 1]]),
    ],
)
def test_next_walks_every_message_exactly_once_in_both_directions(
    client, messages_url, count, limit, ascending, descending
):
    for n in range(count):
        post(client, messages_url, f"msg {n}")

    assert walk(client, f"{messages_url}?limit={limit}") == ascending
    assert walk(client, f"{messages_url}?before_seq={count + 1}&limit={limit}") == descending


def test_a_next_link_keeps_the_limit_and_the_direction(client, messages_url, five):
    descending = client.get(f"{messages_url}?before_seq=6&limit=2").json()["next"]
    ascending = client.get(f"{messages_url}?after_seq=0&limit=2").json()["next"]

    assert "before_seq=4" in descending and "limit=2" in descending and "after_seq" not in descending
    assert "after_seq=2" in ascending and "limit=2" in ascending and "before_seq" not in ascending


def test_a_client_resumes_after_the_last_seq_it_saw(client, messages_url, five):
    page = client.get(f"{messages_url}?after_seq=3&limit=2").json()
    assert page["next"] is None

    post(client, messages_url, "late")

    assert seqs(client.get(f"{messages_url}?after_seq=5")) == [6]


# --- unknown chats --------------------------------------------------------------------------------


@pytest.mark.parametrize("chat_id", [str(uuid.uuid4()), "not-a-uuid", "42"])
def test_messages_of_an_unknown_chat_are_chat_not_found(client, chat, chat_id):
    url = f"/api/chats/{chat_id}/messages/"

    assert_error(client.get(url), 404, "chat_not_found")
    assert_error(post(client, url, "hello"), 404, "chat_not_found")
    assert_error(post(client, url, "hello", key="key-1"), 404, "chat_not_found")
    assert not Message.objects.exists()
    assert OutboxEvent.objects.count() == 1  # the chat.created of the fixture's chat only


def test_a_deleted_chat_has_no_messages_to_read_or_post(client, chat, messages_url, five):
    client.delete(f"/api/chats/{chat['id']}/")

    assert_error(client.get(messages_url), 404, "chat_not_found")
    assert_error(post(client, messages_url, "too late"), 404, "chat_not_found")
    assert not Message.objects.exists()
