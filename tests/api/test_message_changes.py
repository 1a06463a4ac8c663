"""Editing and deleting messages over HTTP (DESIGN.md, "Editing and deleting messages; the chat version"):
PATCH and DELETE /api/chats/{id}/messages/{seq}/, tombstones in history, the chat version, the outbox rows
each request writes, and an edit racing a delete. Every refusal is checked to change nothing (`database_state`:
chats with their versions, memberships, messages with their text, edited_at, deleted and version, the outbox).
"""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from rest_framework.test import APIClient

from chats import adapters
from chats.api import messages as messages_api
from chats.models import Chat, Message, OutboxEvent
from messaging_domain.commands import DeleteMessageCommand, EditMessageCommand
from tests.api.support import (
    assert_error,
    at_once,
    database_state,
    hold_at_once,
    own_client,
    pause_after_reads,
    walk,
)

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {"id", "chat_id", "seq", "text", "author", "created_at", "edited_at", "deleted", "version"}
VERSIONED_TYPES = {"message.created", "message.edited", "message.deleted", "member.joined", "member.left"}


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def mod_client(make_client, make_user):
    return make_client(make_user("mod", is_staff=True))


def create_chat(api, title: str = "Lunch", visibility: str = "public") -> dict:
    response = api.post("/api/chats/", {"title": title, "visibility": visibility}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def messages_url(chat: dict) -> str:
    return f"/api/chats/{chat['id']}/messages/"


def message_url(chat: dict, seq) -> str:
    return f"/api/chats/{chat['id']}/messages/{seq}/"


def post(api, chat: dict, text: str = "hi", key: str | None = None) -> dict:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = api.post(messages_url(chat), {"text": text}, format="json", **headers)
    assert response.status_code in (200, 201), response.content
    return response.json()


def patch(api, chat: dict, seq, text, key: str | None = None):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.patch(message_url(chat, seq), {"text": text}, format="json", **headers)


def delete(api, chat: dict, seq):
    return api.delete(message_url(chat, seq))


def history(api, chat: dict, query: str = "") -> list[dict]:
    """Every message of the chat, following the pages."""
    return [message for page in walk(api, messages_url(chat) + query) for message in page]


def chat_of(api, chat: dict) -> dict:
    response = api.get(f"/api/chats/{chat['id']}/")
    assert response.status_code == 200, response.content
    return response.json()


def new_events(before: tuple) -> list[dict]:
    """The outbox envelopes written since `before` (a `database_state()`), oldest first."""
    seen = set(before[2])
    return [row.envelope for row in OutboxEvent.objects.order_by("id") if row.event_id not in seen]


def summary(envelopes: list[dict]) -> list[tuple]:
    return [(envelope["event_type"], envelope.get("version")) for envelope in envelopes]


def chat_versions(chat: dict) -> list[int]:
    """The versions of the chat's changes, in the order the outbox got them."""
    return [
        envelope["version"]
        for envelope in OutboxEvent.objects.filter(chat_id=chat["id"]).order_by("id").values_list("envelope", flat=True)
        if envelope["event_type"] in VERSIONED_TYPES
    ]


def as_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


@pytest.fixture
def lunch(client) -> dict:
    """ann's public chat with her message 1, "hi" (version 1)."""
    chat = create_chat(client)
    post(client, chat, "hi")
    return chat


# --- PATCH: editing -------------------------------------------------------------------------------


def test_the_author_edits_a_message_and_gets_it_back_with_edited_at_and_the_new_version(client, lunch):
    original = history(client, lunch)[0]
    before = database_state()
    started = datetime.now(timezone.utc)

    response = patch(client, lunch, 1, "  hello there \n")

    assert response.status_code == 200, response.content
    edited = response.json()
    assert set(edited) == MESSAGE_FIELDS
    assert edited == {
        **original, "text": "hello there", "edited_at": edited["edited_at"], "deleted": False, "version": 2
    }
    assert started <= as_utc(edited["edited_at"]) <= datetime.now(timezone.utc)
    assert history(client, lunch) == [edited]
    assert chat_of(client, lunch)["version"] == 2 and chat_of(client, lunch)["last_seq"] == 1
    row = Message.objects.get(pk=edited["id"])
    assert (row.text, row.deleted, row.version, row.created_version) == ("hello there", False, 2, 1)
    (event,) = new_events(before)
    assert summary([event]) == [("message.edited", 2)]
    assert event["payload"] == edited and event["chat_id"] == lunch["id"]
    assert "user_ids" not in event


@pytest.mark.parametrize("text", ["x" * 4096, "  " + "ж" * 4096 + "\n", "a"])
def test_an_edit_of_1_to_4096_characters_after_stripping_is_accepted(client, lunch, text):
    response = patch(client, lunch, 1, text)

    assert response.status_code == 200, response.content
    assert response.json()["text"] == text.strip()
    assert Message.objects.get(chat_id=lunch["id"], seq=1).text == text.strip()


def test_an_edit_to_the_same_text_answers_200_and_changes_nothing(client, lunch):
    before = database_state()

    same = patch(client, lunch, 1, "hi")
    padded = patch(client, lunch, 1, "  hi \t")

    assert same.status_code == padded.status_code == 200
    assert same.json() == padded.json() == history(client, lunch)[0]
    assert (same.json()["edited_at"], same.json()["version"]) == (None, 1)
    assert database_state() == before


@pytest.mark.parametrize(
    "text",
    ["", " ", " \t\n\r ", "x" * 4097, "  " + "x" * 4097 + "  ", "x" * 8192, 42, 4.2, True, False, None, ["hi"], [],
     {"text": "hi"}],
    ids=["empty", "space", "whitespace", "4097", "4097-in-spaces", "8192", "int", "float", "true", "false", "null",
         "list", "empty-list", "object"],
)
def test_an_invalid_text_is_refused_with_400_invalid_text(client, lunch, text):
    before = database_state()

    response = patch(client, lunch, 1, text)

    assert_error(response, 400, "invalid_text")
    assert database_state() == before


@pytest.mark.parametrize("editor", ["member", "owner", "staff", "stranger"])
def test_only_the_author_may_edit_with_403_for_anyone_else(
    client, bob_client, carol_client, mod_client, make_user, make_client, editor
):
    chat = create_chat(client)
    post(bob_client, chat, "bob's")  # bob joins by posting: message 1 is his
    post(carol_client, chat, "carol's")  # carol too
    api = {"member": carol_client, "owner": client, "staff": mod_client,
           "stranger": make_client(make_user("zoe"))}[editor]
    before = database_state()

    response = patch(api, chat, 1, "taken over")

    assert_error(response, 403, "permission_denied")
    assert database_state() == before


def test_a_deleted_message_cannot_be_edited_409_message_deleted(client, lunch):
    assert delete(client, lunch, 1).status_code == 204
    before = database_state()

    response = patch(client, lunch, 1, "back again")

    assert_error(response, 409, "message_deleted")
    assert database_state() == before
    assert history(client, lunch)[0]["text"] == ""


def test_anonymous_requests_are_refused_with_401(lunch):
    before = database_state()

    for response in (patch(APIClient(), lunch, 1, "x"), delete(APIClient(), lunch, 1)):
        assert_error(response, 401)
    assert database_state() == before


# --- seq in the URL -------------------------------------------------------------------------------


BAD_SEQS = ["2", "99", "0", "-1", "abc", "١٢", "²", "99999999999", "2147483648", "1.0", "+1", "1e0", "%201", "0x1"]


@pytest.mark.parametrize("seq", BAD_SEQS)
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_seq_that_names_no_message_is_404_message_not_found(client, lunch, seq, method):
    before = database_state()

    response = patch(client, lunch, seq, "new") if method == "patch" else delete(client, lunch, seq)

    assert_error(response, 404, "message_not_found")
    assert database_state() == before


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_the_largest_seq_still_a_number_is_an_ordinary_unknown_message(client, lunch, method):
    before = database_state()

    response = patch(client, lunch, 2**31 - 1, "new") if method == "patch" else delete(client, lunch, 2**31 - 1)

    assert_error(response, 404, "message_not_found")
    assert database_state() == before


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_seq_of_another_chat_is_404_message_not_found(client, lunch, method):
    dinner = create_chat(client, "Dinner")  # no messages; lunch has seq 1
    before = database_state()

    response = patch(client, dinner, 1, "new") if method == "patch" else delete(client, dinner, 1)

    assert_error(response, 404, "message_not_found")
    assert database_state() == before


# --- chats that are not there ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["stranger", "staff", "removed-author"])
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_private_chats_messages_are_404_chat_not_found_for_a_non_member(
    client, bob_client, carol_client, mod_client, who, method
):
    chat = create_chat(client, "Secret", "private")
    assert client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json").status_code == 201
    post(bob_client, chat, "bob's")
    assert client.delete(f"/api/chats/{chat['id']}/members/bob/").status_code == 204
    api = {"stranger": carol_client, "staff": mod_client, "removed-author": bob_client}[who]
    before = database_state()

    for seq in (1, 2, 99):  # the same answer whether the message is there or not
        response = patch(api, chat, seq, "mine") if method == "patch" else delete(api, chat, seq)
        assert_error(response, 404, "chat_not_found")
    assert database_state() == before


@pytest.mark.parametrize("chat_id", [str(uuid.uuid4()), "not-a-uuid", "42"])
@pytest.mark.parametrize("method", ["patch", "delete"])
def test_an_unknown_chat_is_404_chat_not_found(client, lunch, chat_id, method):
    before = database_state()
    unknown = {"id": chat_id}

    response = patch(client, unknown, 1, "new") if method == "patch" else delete(client, unknown, 1)

    assert_error(response, 404, "chat_not_found")
    assert database_state() == before


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_deleted_chats_messages_are_404_chat_not_found(client, lunch, method):
    assert client.delete(f"/api/chats/{lunch['id']}/").status_code == 204
    before = database_state()

    response = patch(client, lunch, 1, "new") if method == "patch" else delete(client, lunch, 1)

    assert_error(response, 404, "chat_not_found")
    assert database_state() == before


def test_members_of_a_private_chat_edit_and_delete_as_in_a_public_one(client, bob_client):
    chat = create_chat(client, "Secret", "private")
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")  # 1
    post(bob_client, chat, "bob's")  # 2
    post(client, chat, "ann's")  # 3

    assert patch(bob_client, chat, 1, "bob's, edited").status_code == 200  # 4
    assert_error(patch(client, chat, 1, "ann's now"), 403, "permission_denied")
    assert delete(client, chat, 1).status_code == 204  # the owner: 5
    assert_error(delete(bob_client, chat, 2), 403, "permission_denied")
    assert delete(bob_client, chat, 1).status_code == 204  # deleted already: nothing
    assert chat_versions(chat) == [1, 2, 3, 4, 5]


# --- DELETE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("deleter", ["author", "owner", "staff"])
def test_the_author_the_owner_or_staff_delete_with_204_leaving_a_tombstone_in_history(
    client, bob_client, mod_client, deleter
):
    chat = create_chat(client)
    post(client, chat, "first")  # 1
    post(bob_client, chat, "bob's")  # bob joins: 2, posts: 3
    edited = patch(bob_client, chat, 2, "bob's, edited").json()  # 4
    post(client, chat, "third")  # 5
    api = {"author": bob_client, "owner": client, "staff": mod_client}[deleter]  # staff: not a member
    before = database_state()

    response = delete(api, chat, 2)

    assert response.status_code == 204
    assert response.content == b""
    tombstone = {**edited, "text": "", "deleted": True, "version": 6}
    assert [m["seq"] for m in history(client, chat)] == [1, 2, 3]
    assert history(client, chat)[1] == tombstone  # its seq, author, created_at and last edit kept
    assert history(bob_client, chat, "?before_seq=4")[1] == tombstone
    row = Message.objects.get(chat_id=chat["id"], seq=2)
    assert (row.text, row.deleted, row.version) == ("", True, 6)
    (event,) = new_events(before)
    assert summary([event]) == [("message.deleted", 6)]
    assert event["payload"] == tombstone
    assert chat_of(client, chat)["version"] == 6 and chat_of(client, chat)["last_seq"] == 3


@pytest.mark.parametrize("deleter", ["member", "author-of-another", "non-member"])
def test_anyone_else_deleting_gets_403(client, bob_client, carol_client, make_user, make_client, deleter):
    chat = create_chat(client)
    post(bob_client, chat, "bob's")
    post(carol_client, chat, "carol's")
    dave = make_client(make_user("dave"))
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "dave"}, format="json")
    api = {"member": dave, "author-of-another": carol_client, "non-member": make_client(make_user("eve"))}[deleter]
    before = database_state()

    response = delete(api, chat, 1)

    assert_error(response, 403, "permission_denied")
    assert database_state() == before


def test_deleting_a_deleted_message_again_answers_204_and_changes_nothing(client, mod_client, lunch):
    assert delete(client, lunch, 1).status_code == 204
    before = database_state()

    again = delete(client, lunch, 1)
    by_staff = delete(mod_client, lunch, 1)

    assert again.status_code == by_staff.status_code == 204
    assert database_state() == before


def test_a_message_posted_after_a_tombstone_takes_the_next_seq(client, lunch):
    delete(client, lunch, 1)

    posted = post(client, lunch, "after")

    assert (posted["seq"], posted["version"]) == (2, 3)
    assert [(m["seq"], m["text"], m["deleted"]) for m in history(client, lunch)] == [(1, "", True), (2, "after", False)]


# --- history: tombstones, edited_at and version in the pages ----------------------------------------


def test_history_pages_show_each_message_as_it_is_now_in_both_directions(client, bob_client):
    chat = create_chat(client)
    for n in range(1, 8):
        post(client if n % 2 else bob_client, chat, f"msg {n}")
    patch(client, chat, 3, "msg 3, edited")
    delete(client, chat, 4)  # bob's, by the owner
    patch(bob_client, chat, 6, "msg 6, edited")
    delete(bob_client, chat, 6)  # edited, then deleted
    delete(client, chat, 7)

    ascending = [m for page in walk(client, messages_url(chat) + "?limit=3") for m in page]
    descending = [m for page in walk(bob_client, messages_url(chat) + "?before_seq=8&limit=2") for m in page]

    assert ascending == list(reversed(descending))
    shown = [(m["seq"], m["text"], m["deleted"], m["edited_at"] is not None) for m in ascending]
    assert shown == [
        (1, "msg 1", False, False),
        (2, "msg 2", False, False),
        (3, "msg 3, edited", False, True),
        (4, "", True, False),
        (5, "msg 5", False, False),
        (6, "", True, True),
        (7, "", True, False),
    ]
    # messages 1..7 are versions 1, 3..8 (bob joined with message 2: version 2); the changes are 9..13
    assert [m["version"] for m in ascending] == [1, 3, 9, 10, 6, 12, 13]
    assert max(m["version"] for m in ascending) == chat_of(client, chat)["version"] == 13
    assert all(set(m) == MESSAGE_FIELDS for m in ascending)
    assert [m["seq"] for m in history(client, chat, "?after_seq=3")] == [4, 5, 6, 7]


# --- Idempotency-Key on edits ---------------------------------------------------------------------


def test_a_repeated_edit_with_its_key_answers_200_with_the_message_and_writes_nothing(client, lunch):
    first = patch(client, lunch, 1, "hello", key="edit-1")
    before = database_state()

    again = patch(client, lunch, 1, "hello", key="edit-1")
    stripped = patch(client, lunch, 1, "  hello\n", key="edit-1")

    assert first.status_code == again.status_code == stripped.status_code == 200, again.content
    assert again.json() == stripped.json() == first.json()
    assert database_state() == before


def test_a_repeated_key_answers_with_the_message_as_it_is_now(client, lunch):
    patch(client, lunch, 1, "hello", key="edit-1")
    later = patch(client, lunch, 1, "changed my mind").json()
    before = database_state()

    again = patch(client, lunch, 1, "hello", key="edit-1")

    assert again.status_code == 200
    assert again.json() == later == history(client, lunch)[0]  # not applied again: the later edit stands
    assert database_state() == before


def test_a_repeated_key_after_the_message_was_deleted_answers_with_the_tombstone(client, lunch):
    patch(client, lunch, 1, "hello", key="edit-1")
    delete(client, lunch, 1)
    before = database_state()

    again = patch(client, lunch, 1, "hello", key="edit-1")

    assert again.status_code == 200, again.content
    assert (again.json()["text"], again.json()["deleted"]) == ("", True)
    assert database_state() == before


@pytest.mark.parametrize("other", ["seq", "text", "chat"])
def test_a_key_reused_for_another_edit_is_409_idempotency_key_reused(client, lunch, other):
    post(client, lunch, "second")
    dinner = create_chat(client, "Dinner")
    post(client, dinner, "there")
    patch(client, lunch, 1, "hello", key="edit-1")
    before = database_state()

    response = {
        "seq": lambda: patch(client, lunch, 2, "hello", key="edit-1"),
        "text": lambda: patch(client, lunch, 1, "goodbye", key="edit-1"),
        "chat": lambda: patch(client, dinner, 1, "hello", key="edit-1"),
    }[other]()

    assert_error(response, 409, "idempotency_key_reused")
    assert database_state() == before


def test_another_user_may_use_the_same_key_for_their_own_edit(client, bob_client, lunch):
    post(bob_client, lunch, "bob's")
    patch(client, lunch, 1, "hello", key="edit-1")

    theirs = patch(bob_client, lunch, 2, "bob's, edited", key="edit-1")

    assert theirs.status_code == 200, theirs.content
    assert theirs.json()["text"] == "bob's, edited"


def test_a_255_character_key_is_accepted_and_replayed(client, lunch):
    first = patch(client, lunch, 1, "hello", key="k" * 255)
    again = patch(client, lunch, 1, "hello", key="k" * 255)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert OutboxEvent.objects.filter(event_type="message.edited").count() == 1


@pytest.mark.parametrize("key", ["", "   ", "k" * 256], ids=["empty", "blank", "256"])
def test_an_idempotency_key_that_is_not_1_to_255_characters_is_400_invalid_idempotency_key(client, lunch, key):
    before = database_state()

    response = patch(client, lunch, 1, "hello", key=key)

    assert_error(response, 400, "invalid_idempotency_key")
    assert database_state() == before


def test_a_refused_keyed_edit_does_not_spend_its_key(client, bob_client, lunch):
    post(bob_client, lunch, "bob's")
    assert_error(patch(client, lunch, 2, "not mine", key="edit-1"), 403, "permission_denied")

    response = patch(client, lunch, 1, "mine", key="edit-1")

    assert response.status_code == 200 and response.json()["text"] == "mine"


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_a_repeated_post_with_its_key_answers_200_with_the_message_as_it_is_now_after_an_edit_or_delete(
    client, lunch, change
):
    """DESIGN: a repeated Idempotency-Key answers 200 with the same message. The message may have changed
    since (the author edited it, the owner deleted it): the retried post is still the same post, not a new one
    with the key reused."""
    posted = post(client, lunch, "keyed", key="post-1")
    if change == "edited":
        assert patch(client, lunch, posted["seq"], "keyed, edited").status_code == 200
    else:
        assert delete(client, lunch, posted["seq"]).status_code == 204
    before = database_state()

    again = client.post(messages_url(lunch), {"text": "keyed"}, format="json", HTTP_IDEMPOTENCY_KEY="post-1")

    assert again.status_code == 200, again.content
    assert again.json() == history(client, lunch)[1]
    assert database_state() == before


# --- the outbox rows of each request and the chat version -----------------------------------------


def test_each_request_writes_exactly_its_events_with_consecutive_versions(client, bob, bob_client, mod_client):
    chat = create_chat(client)
    steps = [
        (lambda: post(client, chat, "one"), [("message.created", 1)]),
        (lambda: post(bob_client, chat, "two"), [("member.joined", 2), ("message.created", 3)]),
        (lambda: patch(client, chat, 1, "one, edited"), [("message.edited", 4)]),
        (lambda: patch(client, chat, 1, "one, edited"), []),  # same text
        (lambda: patch(client, chat, 1, "one, again", key="k"), [("message.edited", 5)]),
        (lambda: patch(client, chat, 1, "one, again", key="k"), []),  # a replay
        (lambda: patch(bob_client, chat, 1, "bob's now"), []),  # 403
        (lambda: patch(client, chat, 9, "nothing"), []),  # 404
        (lambda: patch(client, chat, 1, ""), []),  # 400
        (lambda: delete(bob_client, chat, 1), []),  # 403
        (lambda: delete(client, chat, 2), [("message.deleted", 6)]),  # the owner deletes bob's
        (lambda: delete(bob_client, chat, 2), []),  # deleted already
        (lambda: patch(bob_client, chat, 2, "undelete"), []),  # 409
        (lambda: client.post(f"/api/chats/{chat['id']}/read/", {"seq": 2}, format="json"), []),
        (lambda: bob_client.delete(f"/api/chats/{chat['id']}/members/bob/"), [("member.left", 7)]),
        (lambda: patch(bob_client, chat, 2, "too late"), []),  # 409: deleted
        (lambda: post(client, chat, "three", key="p"), [("message.created", 8)]),
        (lambda: post(client, chat, "three", key="p"), []),  # a replay
        (lambda: delete(mod_client, chat, 3), [("message.deleted", 9)]),
        (lambda: client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json"),
         [("member.joined", 10)]),
        (lambda: delete(client, chat, 1), [("message.deleted", 11)]),
    ]
    for n, (request, expected) in enumerate(steps):
        before = database_state()

        request()

        written = new_events(before)
        assert summary([e for e in written if e["event_type"] != "chat.read"]) == expected, n
        assert all("version" not in e for e in written if e["event_type"] == "chat.read"), n
    assert chat_versions(chat) == list(range(1, 12))
    assert chat_of(client, chat)["version"] == 11 == Chat.objects.get(pk=chat["id"]).version
    # each message's version is that of its latest event, whose payload is the message as the history shows it
    for message in history(client, chat):
        latest = [
            e for e in OutboxEvent.objects.filter(chat_id=chat["id"]).order_by("id").values_list("envelope", flat=True)
            if e["event_type"].startswith("message.") and e["payload"]["id"] == message["id"]
        ][-1]
        assert latest["payload"] == message and latest["version"] == message["version"]


def test_each_chat_counts_its_own_versions(client, bob_client):
    lunch, dinner = create_chat(client, "Lunch"), create_chat(bob_client, "Dinner")
    for n in range(3):
        post(client, lunch, f"lunch {n}")
        post(bob_client, dinner, f"dinner {n}")
    patch(bob_client, dinner, 2, "dinner 1, edited")
    delete(client, lunch, 1)

    assert chat_versions(lunch) == [1, 2, 3, 4]
    assert chat_versions(dinner) == [1, 2, 3, 4]
    assert [chat_of(client, c)["version"] for c in (lunch, dinner)] == [4, 4]


# --- races ----------------------------------------------------------------------------------------


@pytest.fixture
def race(monkeypatch):
    """Call it once the scene is set: from then on the next two message requests reach their command at once
    (a barrier in front of the mediator), the one named `late` (if any) a moment after the other, and every
    message read inside a command is followed by a pause, so that without the chat's row lock both would read
    the message as it was before either wrote, and both would write."""

    def arm(late=None) -> None:
        hold_at_once(monkeypatch, messages_api, late=late)
        pause_after_reads(monkeypatch, adapters.DjangoMessageRepository, 0.3)

    return arm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["edit", "delete", "either"])
def test_an_edit_racing_a_delete_of_one_message_ends_one_way_cleanly(client, ann, make_client, race, first):
    chat = create_chat(client)
    post(client, chat, "hi")  # version 1
    editor, deleter = own_client(make_client, ann), own_client(make_client, ann)
    before = database_state()
    race(late={"edit": DeleteMessageCommand, "delete": EditMessageCommand, "either": None}[first])

    edited, deleted = at_once(lambda: patch(editor, chat, 1, "edited"), lambda: delete(deleter, chat, 1))

    assert not isinstance(edited, Exception) and not isinstance(deleted, Exception), (edited, deleted)
    assert deleted.status_code == 204, deleted.content
    types = [e["event_type"] for e in new_events(before)]
    if edited.status_code == 200:  # the edit first, then the delete of the edited message
        assert first != "delete"
        assert types == ["message.edited", "message.deleted"]
        assert (edited.json()["text"], edited.json()["version"]) == ("edited", 2)
    else:  # the delete first: the edit finds a tombstone
        assert first != "edit"
        assert_error(edited, 409, "message_deleted")
        assert types == ["message.deleted"]
    assert chat_versions(chat) == list(range(1, len(types) + 2))
    row = Message.objects.get(chat_id=chat["id"], seq=1)
    assert (row.text, row.deleted, row.version) == ("", True, len(types) + 1)
    assert Chat.objects.get(pk=chat["id"]).version == len(types) + 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_edits_make_two_consecutive_versions_and_the_later_one_stands(client, ann, make_client, race):
    chat = create_chat(client)
    post(client, chat, "hi")
    one, two = own_client(make_client, ann), own_client(make_client, ann)
    race()

    responses = at_once(lambda: patch(one, chat, 1, "one"), lambda: patch(two, chat, 1, "two"))

    assert not [r for r in responses if isinstance(r, Exception)], responses
    assert [r.status_code for r in responses] == [200, 200], [r.content for r in responses]
    assert sorted(r.json()["version"] for r in responses) == [2, 3]
    last = max(responses, key=lambda r: r.json()["version"]).json()
    assert history(client, chat) == [last]
    edits = [e for e in OutboxEvent.objects.filter(event_type="message.edited").order_by("id")
             .values_list("envelope", flat=True)]
    assert [(e["version"], e["payload"]["text"]) for e in edits] == sorted(
        (r.json()["version"], r.json()["text"]) for r in responses
    )
    assert chat_versions(chat) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deletes_make_one_event_and_two_204(client, ann, make_client, race):
    chat = create_chat(client)
    post(client, chat, "hi")
    one, two = own_client(make_client, ann), own_client(make_client, ann)
    race()

    responses = at_once(lambda: delete(one, chat, 1), lambda: delete(two, chat, 1))

    assert [getattr(r, "status_code", r) for r in responses] == [204, 204]
    assert OutboxEvent.objects.filter(event_type="message.deleted").count() == 1
    assert chat_versions(chat) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_one_keyed_edit_sent_twice_at_once_is_made_once(client, ann, make_client, race):
    chat = create_chat(client)
    post(client, chat, "hi")
    one, two = own_client(make_client, ann), own_client(make_client, ann)
    race()

    responses = at_once(*[lambda api=api: patch(api, chat, 1, "edited", key="edit-1") for api in (one, two)])

    assert [getattr(r, "status_code", r) for r in responses] == [200, 200], responses
    assert responses[0].json() == responses[1].json()
    assert OutboxEvent.objects.filter(event_type="message.edited").count() == 1
    assert chat_versions(chat) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_a_post_and_a_join_keeps_versions_consecutive(client, ann, bob, make_client, race):
    chat = create_chat(client)
    post(client, chat, "hi")
    editor, poster = own_client(make_client, ann), own_client(make_client, bob)
    race()

    edited, posted = at_once(lambda: patch(editor, chat, 1, "edited"), lambda: post(poster, chat, "bob joins"))

    assert edited.status_code == 200, edited
    assert posted["seq"] == 2
    assert chat_versions(chat) == [1, 2, 3, 4]  # one edit, bob's join and his message, in some order
    assert {edited.json()["version"], posted["version"]} <= {2, 3, 4}


@pytest.mark.django_db(transaction=True)
def test_one_key_on_posts_in_two_chats_at_once_is_one_201_and_one_409(client, ann, make_client, race, monkeypatch):
    """As for edits: the key's unique index decides between two chats. On PostgreSQL both posts find the key
    unused (a pause after the lookup) and the loser's INSERT fails inside its transaction, which is rolled back
    whole: a clean 409, and the loser's chat as it was."""
    lunch, dinner = create_chat(client, "Lunch"), create_chat(client, "Dinner")
    one, two = own_client(make_client, ann), own_client(make_client, ann)
    before = database_state()
    race()
    pause_after_reads(monkeypatch, adapters.DjangoMessageRepository, 0.3, method="get_by_idempotency_key")

    responses = at_once(
        *[lambda api=api, chat=chat: api.post(messages_url(chat), {"text": "hi"}, format="json",
                                                HTTP_IDEMPOTENCY_KEY="post-1")
          for api, chat in ((one, lunch), (two, dinner))]
    )

    assert sorted(getattr(r, "status_code", r) for r in responses) == [201, 409], responses
    assert_error(next(r for r in responses if r.status_code == 409), 409, "idempotency_key_reused")
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert summary(new_events(before)) == [("message.created", 1)]
    loser = dinner if winner["chat_id"] == lunch["id"] else lunch
    assert history(client, loser) == [] and chat_of(client, loser)["version"] == 0
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_key_on_edits_in_two_chats_at_once_is_one_200_and_one_409(client, ann, make_client, race):
    """The chat lock does not cover two chats: the key's unique index decides, and the loser is a clean 409."""
    lunch, dinner = create_chat(client, "Lunch"), create_chat(client, "Dinner")
    post(client, lunch, "hi")
    post(client, dinner, "hi")
    one, two = own_client(make_client, ann), own_client(make_client, ann)
    before = database_state()
    race()

    responses = at_once(lambda: patch(one, lunch, 1, "edited", key="edit-1"),
                        lambda: patch(two, dinner, 1, "edited", key="edit-1"))

    assert sorted(getattr(r, "status_code", r) for r in responses) == [200, 409], responses
    assert_error(next(r for r in responses if r.status_code == 409), 409, "idempotency_key_reused")
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert summary(new_events(before)) == [("message.edited", 2)]
    loser = dinner if winner["chat_id"] == lunch["id"] else lunch
    assert history(client, loser)[0]["text"] == "hi" and chat_of(client, loser)["version"] == 1
