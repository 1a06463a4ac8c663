"""Membership over HTTP (DESIGN.md, "Membership and privacy"): public and private chats, members with roles,
read positions, and the outbox rows each accepted change writes. Every refusal is checked to change nothing:
chats, messages, outbox and memberships (`database_state`)."""

import json
import uuid
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import ProtectedError

from chats import adapters
from chats.api import members as members_api
from chats.models import Chat, Membership, OutboxEvent
from tests.api.support import (
    assert_error,
    at_once,
    database_state,
    hold_at_once,
    membership_rows,
    own_client,
    pause_after_reads,
    walk,
)

pytestmark = pytest.mark.django_db

MEMBER_FIELDS = {"username", "role", "joined_at", "last_read_seq"}


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def mod(make_user):
    return make_user("mod", is_staff=True)


@pytest.fixture
def mod_client(make_client, mod):
    return make_client(mod)


def create_chat(api, title: str, visibility: str | None = None) -> dict:
    body = {"title": title} if visibility is None else {"title": title, "visibility": visibility}
    response = api.post("/api/chats/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def url(chat: dict, rest: str = "") -> str:
    return f"/api/chats/{chat['id']}/{rest}"


def post_message(api, chat: dict, text: str = "hi", key: str | None = None) -> dict:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = api.post(url(chat, "messages/"), {"text": text}, format="json", **headers)
    assert response.status_code in (200, 201), response.content
    return response.json()


def add(api, chat: dict, username: str | None = None):
    return api.post(url(chat, "members/"), {} if username is None else {"username": username}, format="json")


def added(api, chat: dict, username: str | None = None) -> dict:
    response = add(api, chat, username)
    assert response.status_code == 201, response.content
    return response.json()


def remove(api, chat: dict, username: str):
    return api.delete(url(chat, f"members/{username}/"))


def mark_read(api, chat: dict, seq):
    return api.post(url(chat, "read/"), {"seq": seq}, format="json")


def members(api, chat: dict) -> list[dict]:
    return [member for page in walk(api, url(chat, "members/")) for member in page]


def member(api, chat: dict, username: str) -> dict:
    return next(m for m in members(api, chat) if m["username"] == username)


def chat_of(api, chat: dict) -> dict:
    response = api.get(url(chat))
    assert response.status_code == 200, response.content
    return response.json()


def titles(api, **params) -> list[str]:
    response = api.get("/api/chats/", params)
    assert response.status_code == 200, response.content
    return [chat["title"] for chat in response.json()["results"]]


def new_events(before: tuple) -> list[dict]:
    """The outbox envelopes written since `before` (a `database_state()`), oldest first."""
    seen = set(before[2])
    return [row.envelope for row in OutboxEvent.objects.order_by("id") if row.event_id not in seen]


def summary(envelopes: list[dict]) -> list[tuple]:
    """(event type, user_ids or None) of each envelope: what each event is and whose sockets it is for."""
    return [(envelope["event_type"], envelope.get("user_ids")) for envelope in envelopes]


def public_view(chat: dict) -> dict:
    """A chat as event payloads carry it: without anyone's `membership`."""
    return {key: value for key, value in chat.items() if key != "membership"}


def as_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


# --- create: visibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("visibility, expected", [(None, "public"), ("public", "public"), ("private", "private")])
def test_a_chat_is_public_unless_created_private(client, ann, visibility, expected):
    chat = create_chat(client, "Lunch", visibility)

    assert chat["visibility"] == expected
    assert chat["member_count"] == 1
    assert chat["membership"] == {"role": "owner", "last_read_seq": 0, "unread": 0}
    row = Chat.objects.get(pk=chat["id"])
    assert (row.visibility, row.member_count) == (expected, 1)
    assert membership_rows() == [(row.pk, "ann", "owner", 0)]


def test_a_private_chats_creation_is_addressed_to_its_owner_and_a_public_ones_to_everyone(client, ann):
    before = database_state()
    public = create_chat(client, "Lunch")
    private = create_chat(client, "Secret", "private")

    events = new_events(before)

    assert summary(events) == [("chat.created", None), ("chat.created", [ann.pk])]
    assert [event["payload"] for event in events] == [public_view(public), public_view(private)]


@pytest.mark.parametrize(
    "visibility",
    ["secret", "Private", "PUBLIC", "", " public", 1, 0, True, None, [], ["private"], {"value": "private"}],
    ids=repr,
)
def test_a_visibility_other_than_public_or_private_is_invalid_visibility(client, visibility):
    create_chat(client, "Existing")
    before = database_state()

    response = client.post("/api/chats/", {"title": "Lunch", "visibility": visibility}, format="json")

    assert_error(response, 400, "invalid_visibility")
    assert database_state() == before


# --- the chat as each user sees it ----------------------------------------------------------------


@pytest.fixture
def busy_chat(client, bob_client) -> dict:
    """ann's public chat: 3 messages, then bob joins, then 2 more (last_seq 5)."""
    chat = create_chat(client, "Lunch")
    for n in range(3):
        post_message(client, chat, f"before {n}")
    added(bob_client, chat)
    for n in range(2):
        post_message(client, chat, f"after {n}")
    return chat


def test_each_user_sees_their_own_membership_and_unread_count(client, bob_client, carol_client, busy_chat):
    mine, bobs, carols = (chat_of(api, busy_chat) for api in (client, bob_client, carol_client))

    assert mine["membership"] == {"role": "owner", "last_read_seq": 5, "unread": 0}  # posting reads up to one's post
    assert bobs["membership"] == {"role": "member", "last_read_seq": 3, "unread": 2}  # joined at seq 3
    assert carols["membership"] is None
    assert public_view(mine) == public_view(bobs) == public_view(carols)
    assert (mine["last_seq"], mine["member_count"], mine["visibility"]) == (5, 2, "public")


def test_the_list_shows_each_user_their_own_membership_too(client, bob_client, carol_client, busy_chat):
    for api in (client, bob_client, carol_client):
        (listed,) = api.get("/api/chats/").json()["results"]
        (found,) = api.get("/api/chats/", {"search": "lun"}).json()["results"]
        assert listed == found == chat_of(api, busy_chat)


def test_reading_moves_the_unread_count_of_the_chat(client, bob_client, busy_chat):
    assert mark_read(bob_client, busy_chat, 4).json() == {"last_read_seq": 4, "unread": 1}

    assert chat_of(bob_client, busy_chat)["membership"] == {"role": "member", "last_read_seq": 4, "unread": 1}
    assert member(client, busy_chat, "bob")["last_read_seq"] == 4


def test_posting_past_unread_messages_reads_them_and_tells_the_authors_other_devices(client, bob, bob_client, busy_chat):
    before = database_state()

    message = post_message(bob_client, busy_chat, "caught up")

    assert chat_of(bob_client, busy_chat)["membership"] == {"role": "member", "last_read_seq": 6, "unread": 0}
    assert chat_of(client, busy_chat)["membership"] == {"role": "owner", "last_read_seq": 5, "unread": 1}
    assert message["seq"] == 6
    assert summary(new_events(before)) == [("message.created", None), ("chat.read", [bob.pk])]


def test_posting_with_nothing_unread_moves_the_read_position_without_a_chat_read_event(client, bob_client, busy_chat):
    post_message(bob_client, busy_chat, "caught up")
    before = database_state()

    post_message(bob_client, busy_chat, "and again")

    assert chat_of(bob_client, busy_chat)["membership"] == {"role": "member", "last_read_seq": 7, "unread": 0}
    assert summary(new_events(before)) == [("message.created", None)]


# --- ?member= -------------------------------------------------------------------------------------


def test_member_me_lists_only_the_chats_i_am_a_member_of_newest_first(client, bob_client, carol_client):
    create_chat(client, "ann public")
    joined = create_chat(client, "ann joined by bob")
    secret = create_chat(client, "ann secret with bob", "private")
    create_chat(client, "ann secret", "private")
    create_chat(bob_client, "bob own")
    create_chat(carol_client, "carol public")
    added(bob_client, joined)
    added(client, secret, "bob")

    assert titles(bob_client, member="me") == ["bob own", "ann secret with bob", "ann joined by bob"]
    assert titles(bob_client, member="me", search="ANN") == ["ann secret with bob", "ann joined by bob"]
    assert titles(bob_client) == ["carol public", "bob own", "ann secret with bob", "ann joined by bob", "ann public"]
    assert titles(carol_client, member="me") == ["carol public"]


def test_member_me_pages_follow_next(bob_client, client):
    chats = [create_chat(client, f"chat {n}") for n in range(5)]
    for chat in chats[:4]:
        added(bob_client, chat)

    pages = walk(bob_client, "/api/chats/?member=me&limit=3")

    assert [[chat["title"] for chat in page] for page in pages] == [["chat 3", "chat 2", "chat 1"], ["chat 0"]]
    assert all(chat["membership"]["role"] == "member" for page in pages for chat in page)


@pytest.mark.parametrize("value", ["x", "ME", "Me", "bob", "true", "1", "me ", " "])
def test_a_member_filter_other_than_me_is_invalid_member(client, value):
    create_chat(client, "Lunch")

    assert_error(client.get("/api/chats/", {"member": value}), 400, "invalid_member")


# --- a private chat does not exist for non-members ------------------------------------------------

# Every endpoint under /api/chats/{id}/: (method, path after the id, body). `{me}`: the requester's name.
EVERY_CHAT_ENDPOINT = [
    ("get", "", None),
    ("delete", "", None),
    ("get", "messages/", None),
    ("post", "messages/", {"text": "hello"}),
    ("get", "members/", None),
    ("post", "members/", {}),
    ("post", "members/", {"username": "{me}"}),
    ("post", "members/", {"username": "dave"}),
    ("delete", "members/{me}/", None),
    ("delete", "members/dave/", None),
    ("delete", "members/ann/", None),
    ("post", "read/", {"seq": 1}),
]
ENDPOINT_IDS = [f"{method}-{path or 'detail'}-{json.dumps(body)}" for method, path, body in EVERY_CHAT_ENDPOINT]


def call(api, method: str, chat_id: str, path: str, body, me: str):
    target = f"/api/chats/{chat_id}/{path.format(me=me)}"
    if body is None:
        return getattr(api, method)(target)
    return getattr(api, method)(target, json.loads(json.dumps(body).replace("{me}", me)), format="json")


@pytest.fixture
def secret(client, make_user, carol_client) -> dict:
    """ann's private chat with dave and carol as members and two messages."""
    make_user("dave")
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "dave")
    added(client, chat, "carol")
    post_message(client, chat, "one")
    post_message(carol_client, chat, "two")
    return chat


@pytest.fixture(params=["stranger", "staff", "removed member"])
def outsider(request, client, secret, bob_client, mod_client, carol_client):
    """Who is not a member of ann's private chat: a user who never was, staff, and carol once ann removed her."""
    if request.param == "stranger":
        return "bob", bob_client
    if request.param == "staff":
        return "mod", mod_client
    assert remove(client, secret, "carol").status_code == 204
    return "carol", carol_client


@pytest.mark.parametrize("method, path, body", EVERY_CHAT_ENDPOINT, ids=ENDPOINT_IDS)
def test_a_private_chat_is_chat_not_found_for_a_non_member_on_every_endpoint(secret, outsider, method, path, body):
    username, api = outsider
    before = database_state()

    response = call(api, method, secret["id"], path, body, username)
    unknown_id = str(uuid.uuid4())
    unknown = call(api, method, unknown_id, path, body, username)

    assert_error(response, 404, "chat_not_found")
    # the very answer an id that names no chat gets: nothing tells the chat exists
    assert response.json() == json.loads(json.dumps(unknown.json()).replace(unknown_id, secret["id"]))
    assert database_state() == before


def test_a_private_chat_is_absent_from_non_members_lists_and_searches(client, secret, outsider, make_client):
    username, api = outsider
    create_chat(client, "Public")

    for params in [{}, {"search": "secret"}, {"search": "SEC"}, {"member": "me"}, {"limit": "1"}]:
        assert "Secret" not in titles(api, **params), params
    assert titles(api) == ["Public"]
    assert titles(make_client(get_user_model().objects.get(username="dave")), search="sec") == ["Secret"]


def test_the_members_of_a_private_chat_see_it_everywhere(client, secret, make_client):
    dave = make_client(get_user_model().objects.get(username="dave"))

    assert chat_of(dave, secret)["membership"] == {"role": "member", "last_read_seq": 0, "unread": 2}  # added at 0
    assert [m["username"] for m in members(dave, secret)] == ["ann", "dave", "carol"]
    assert [m["text"] for m in dave.get(url(secret, "messages/")).json()["results"]] == ["one", "two"]
    assert titles(dave, member="me") == titles(dave) == ["Secret"]
    assert mark_read(dave, secret, 2).json() == {"last_read_seq": 2, "unread": 0}
    assert post_message(dave, secret, "three")["seq"] == 3


# --- the members page -----------------------------------------------------------------------------


@pytest.fixture
def lunch(client, bob_client, carol_client) -> dict:
    """ann's public chat: ann posts, bob joins, ann posts, carol joins."""
    chat = create_chat(client, "Lunch")
    post_message(client, chat, "one")
    added(bob_client, chat)
    post_message(client, chat, "two")
    added(carol_client, chat)
    return chat


def test_the_members_page_lists_members_in_join_order_owner_first(client, lunch):
    response = client.get(url(lunch, "members/"))

    assert response.status_code == 200
    page = response.json()
    assert page["next"] is None
    assert all(set(m) == MEMBER_FIELDS for m in page["results"])
    assert [(m["username"], m["role"], m["last_read_seq"]) for m in page["results"]] == [
        ("ann", "owner", 2),  # she posted both messages
        ("bob", "member", 1),  # joined after the first
        ("carol", "member", 2),
    ]
    joined = [as_utc(m["joined_at"]) for m in page["results"]]
    assert joined == sorted(joined)
    assert joined[0] == as_utc(lunch["created_at"])


def test_anyone_may_list_the_members_of_a_public_chat(lunch, make_user, make_client):
    stranger = make_client(make_user("zoe"))

    assert [m["username"] for m in members(stranger, lunch)] == ["ann", "bob", "carol"]


@pytest.mark.parametrize("limit, expected", [(1, [["ann"], ["bob"], ["carol"]]), (2, [["ann", "bob"], ["carol"]])])
def test_the_members_page_follows_next_with_a_limit(client, lunch, limit, expected):
    pages = walk(client, url(lunch, f"members/?limit={limit}"))

    assert [[m["username"] for m in page] for page in pages] == expected


def test_a_limit_of_200_members_is_one_page(client, lunch):
    assert client.get(url(lunch, "members/"), {"limit": "200"}).json()["next"] is None


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5"])
def test_a_limit_outside_1_to_200_on_the_members_page_is_invalid_limit(client, lunch, limit):
    assert_error(client.get(url(lunch, "members/"), {"limit": limit}), 400, "invalid_limit")


# --- adding ---------------------------------------------------------------------------------------


# "BOB" names bob too: usernames are looked up in any case, so that is bob joining himself.
@pytest.mark.parametrize("body", [{}, {"username": "bob"}, {"username": "BOB"}], ids=["omitted", "own", "own-upper"])
def test_anyone_joins_a_public_chat_themselves_with_201(client, bob, bob_client, body):
    chat = create_chat(client, "Lunch")
    post_message(client, chat)
    post_message(client, chat)
    before = database_state()

    response = bob_client.post(url(chat, "members/"), body, format="json")

    assert response.status_code == 201, response.content
    joined = response.json()
    assert set(joined) == MEMBER_FIELDS
    assert (joined["username"], joined["role"], joined["last_read_seq"]) == ("bob", "member", 2)  # no backlog
    assert as_utc(joined["joined_at"]) > as_utc(chat["created_at"])
    assert member(client, chat, "bob") == joined
    assert chat_of(bob_client, chat)["membership"] == {"role": "member", "last_read_seq": 2, "unread": 0}
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    (event,) = new_events(before)
    assert summary([event]) == [("member.joined", [bob.pk])]
    assert event["chat_id"] == chat["id"]
    assert event["payload"] == {
        "chat_id": chat["id"],
        "member": joined,
        "chat": {**public_view(chat), "last_seq": 2, "member_count": 2, "version": 3},
    }
    assert event["version"] == 3  # two messages, then bob: the chat's third change
    assert chat_of(bob_client, chat)["version"] == 3


def test_joining_a_chat_one_is_in_answers_200_and_writes_nothing(client, bob_client):
    chat = create_chat(client, "Lunch")
    first = added(bob_client, chat)
    post_message(client, chat)
    before = database_state()

    again = add(bob_client, chat)
    by_name = add(bob_client, chat, "bob")
    by_name_in_another_case = add(bob_client, chat, "Bob")

    assert again.status_code == by_name.status_code == by_name_in_another_case.status_code == 200
    assert again.json() == by_name.json() == by_name_in_another_case.json() == first  # as they are
    assert database_state() == before


def test_the_owner_asking_to_join_their_own_chat_gets_their_membership_with_200(client):
    chat = create_chat(client, "Lunch", "private")
    before = database_state()

    response = add(client, chat)

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["role"]) == ("ann", "owner")
    assert database_state() == before


@pytest.fixture
def straße_and_strasse(make_user, make_client):
    """Two users: their names are distinct in lower case (which is what makes usernames unique), though they
    case-fold alike ("ß" folds to "ss")."""
    return make_client(make_user("straße")), make_client(make_user("strasse"))


@pytest.mark.parametrize("action", [add, remove], ids=["add", "remove"])
def test_a_name_that_only_case_folds_to_ones_own_names_someone_else(client, straße_and_strasse, action):
    sharp, plain = straße_and_strasse
    chat = create_chat(client, "Lunch")
    added(sharp, chat)
    added(plain, chat)
    before = database_state()

    # straße adding or removing "strasse" acts on someone else: not hers to do
    assert_error(action(sharp, chat, "strasse"), 403, "permission_denied")
    assert database_state() == before


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_the_owner_adds_a_user_by_username_in_any_case(client, bob, bob_client, visibility):
    chat = create_chat(client, "Lunch", visibility)
    post_message(client, chat)
    before = database_state()

    response = add(client, chat, "BoB")

    assert response.status_code == 201, response.content
    assert (response.json()["username"], response.json()["role"], response.json()["last_read_seq"]) == (
        "bob", "member", 1
    )
    events = new_events(before)
    assert summary(events) == [("member.joined", [bob.pk])]
    assert events[0]["payload"]["chat"] == {**public_view(chat), "last_seq": 1, "member_count": 2, "version": 2}
    assert events[0]["version"] == 2
    # the chat now exists for bob, with his membership
    assert chat_of(bob_client, chat)["membership"] == {"role": "member", "last_read_seq": 1, "unread": 0}
    assert titles(bob_client, member="me") == ["Lunch"]


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_adding_someone_who_is_already_a_member_answers_200_and_writes_nothing(client, bob_client, visibility):
    chat = create_chat(client, "Lunch", visibility)
    first = added(client, chat, "bob")
    before = database_state()

    response = add(client, chat, "Bob")

    assert response.status_code == 200
    assert response.json() == first
    assert database_state() == before


@pytest.fixture
def inactive_dave(make_user):
    dave = make_user("dave")
    dave.is_active = False
    dave.save()
    return dave


@pytest.fixture
def inactive_carol(carol):
    carol.is_active = False
    carol.save()
    return carol


@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("username", ["nobody", "carol", "CAROL", "bob2", " bob"])
def test_adding_an_unknown_or_inactive_username_is_user_not_found(client, bob, inactive_carol, visibility, username):
    chat = create_chat(client, "Lunch", visibility)
    before = database_state()

    assert_error(add(client, chat, username), 400, "user_not_found")
    assert database_state() == before


@pytest.mark.parametrize("username", [42, True, None, ["bob"], {"name": "bob"}], ids=repr)
def test_a_username_that_is_not_a_string_is_invalid_username(client, bob, username):
    chat = create_chat(client, "Lunch")
    before = database_state()

    assert_error(client.post(url(chat, "members/"), {"username": username}, format="json"), 400, "invalid_username")
    assert database_state() == before


@pytest.mark.parametrize(
    "visibility, bob_is_member",
    [("public", False), ("public", True), ("private", True)],
    ids=["public-non-member", "public-member", "private-member"],
)
# permission is decided before the username is looked up: a refused caller learns nothing of who exists
@pytest.mark.parametrize("username", ["carol", "nobody", "ann", "dave"])
def test_only_the_owner_or_staff_add_someone_else(
    client, bob_client, carol, inactive_dave, visibility, bob_is_member, username
):
    chat = create_chat(client, "Lunch", visibility)
    if bob_is_member:
        added(client, chat, "bob")
    before = database_state()

    assert_error(add(bob_client, chat, username), 403, "permission_denied")
    assert database_state() == before


def test_staff_add_someone_else_to_a_public_chat_they_are_not_in(client, mod_client, carol):
    chat = create_chat(client, "Lunch")
    before = database_state()

    response = add(mod_client, chat, "carol")

    assert response.status_code == 201, response.content
    assert summary(new_events(before)) == [("member.joined", [carol.pk])]
    assert [m["username"] for m in members(client, chat)] == ["ann", "carol"]  # staff did not join


def test_staff_who_are_members_of_a_private_chat_add_others_to_it(client, mod, mod_client, carol, carol_client):
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "mod")
    before = database_state()

    response = add(mod_client, chat, "carol")

    assert response.status_code == 201, response.content
    assert summary(new_events(before)) == [("member.joined", [carol.pk])]
    assert chat_of(carol_client, chat)["member_count"] == 3


# --- removing and leaving -------------------------------------------------------------------------


@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("username", ["bob", "BOB"])
def test_the_owner_removes_a_member(client, bob, bob_client, visibility, username):
    chat = create_chat(client, "Lunch", visibility)
    added(client, chat, "bob")
    post_message(client, chat)
    mark_read(bob_client, chat, 1)
    bob_before = member(client, chat, "bob")
    before = database_state()

    response = remove(client, chat, username)

    assert response.status_code == 204
    assert response.content == b""
    assert not Membership.objects.filter(chat_id=chat["id"], user=bob).exists()
    assert chat_of(client, chat)["member_count"] == 1
    (event,) = new_events(before)
    assert summary([event]) == [("member.left", [bob.pk])]
    assert event["payload"] == {
        "chat_id": chat["id"],
        "member": bob_before,
        "chat": {**public_view(chat), "last_seq": 1, "member_count": 1, "version": 3},
    }
    # bob joined (1), ann posted (2), bob left (3); reading (mark_read) is no change of the chat
    assert event["version"] == 3
    assert chat_of(client, chat)["version"] == 3


@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("username", ["bob", "Bob"])
def test_a_member_leaves_a_chat_themselves(client, bob, bob_client, visibility, username):
    chat = create_chat(client, "Lunch", visibility)
    added(client, chat, "bob")
    before = database_state()

    response = remove(bob_client, chat, username)

    assert response.status_code == 204
    assert summary(new_events(before)) == [("member.left", [bob.pk])]
    assert [m["username"] for m in members(client, chat)] == ["ann"]
    assert titles(bob_client, member="me") == []
    if visibility == "public":
        assert chat_of(bob_client, chat)["membership"] is None  # still there for him, as for anyone
    else:
        assert_error(bob_client.get(url(chat)), 404, "chat_not_found")


@pytest.mark.parametrize(
    "requester, username",
    [("ann", "carol"), ("ann", "nobody"), ("bob", "bob"), ("mod", "carol"), ("mod", "mod")],
    ids=["owner-removes-non-member", "owner-removes-unknown", "non-member-leaves", "staff-removes-non-member",
         "staff-non-member-leaves"],
)
def test_removing_someone_who_is_not_a_member_is_member_not_found(
    client, bob_client, mod_client, carol, requester, username
):
    chat = create_chat(client, "Lunch")
    post_message(client, chat)
    before = database_state()
    api = {"ann": client, "bob": bob_client, "mod": mod_client}[requester]

    assert_error(remove(api, chat, username), 404, "member_not_found")
    assert database_state() == before


def test_the_owner_removes_a_member_whose_account_is_deactivated(client, carol):
    """A deactivated account keeps its memberships (brief); it is still a member, listed as one, so removable."""
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "carol")
    carol.is_active = False
    carol.save()
    assert [m["username"] for m in members(client, chat)] == ["ann", "carol"]

    response = remove(client, chat, "carol")

    assert response.status_code == 204, response.content
    assert [m["username"] for m in members(client, chat)] == ["ann"]


@pytest.mark.parametrize(
    "visibility, requester",
    [("public", "ann"), ("private", "ann"), ("public", "mod"), ("private", "mod")],
)
def test_the_owner_cannot_leave_nor_be_removed_even_by_staff(client, mod_client, visibility, requester):
    chat = create_chat(client, "Lunch", visibility)
    if visibility == "private":
        added(client, chat, "mod")  # staff act on a private chat through the API only as members
    before = database_state()
    api = {"ann": client, "mod": mod_client}[requester]

    assert_error(remove(api, chat, "ann"), 400, "owner_cannot_leave")
    assert_error(remove(api, chat, "ANN"), 400, "owner_cannot_leave")
    assert database_state() == before


@pytest.mark.parametrize(
    "visibility, bob_is_member, username",
    [
        ("public", True, "carol"),
        ("public", False, "carol"),
        ("private", True, "carol"),
        # permission is decided before whether the target is a member, and before the owner rule
        ("public", True, "nobody"),
        ("public", True, "dave"),
        ("public", True, "ann"),
        ("private", True, "nobody"),
        ("private", True, "ann"),
    ],
)
def test_only_the_owner_or_staff_remove_someone_else(
    client, bob_client, carol, make_user, visibility, bob_is_member, username
):
    make_user("dave")
    chat = create_chat(client, "Lunch", visibility)
    added(client, chat, "carol")
    if bob_is_member:
        added(client, chat, "bob")
    before = database_state()

    assert_error(remove(bob_client, chat, username), 403, "permission_denied")
    assert database_state() == before


@pytest.mark.parametrize("visibility, mod_is_member", [("public", False), ("public", True), ("private", True)])
def test_staff_remove_members(client, bob, mod_client, visibility, mod_is_member):
    chat = create_chat(client, "Lunch", visibility)
    added(client, chat, "bob")
    if mod_is_member:
        added(client, chat, "mod")
    before = database_state()

    response = remove(mod_client, chat, "bob")

    assert response.status_code == 204, response.content
    assert summary(new_events(before)) == [("member.left", [bob.pk])]
    assert "bob" not in [m["username"] for m in members(client, chat)]


# --- read positions -------------------------------------------------------------------------------


@pytest.fixture
def five(client, bob_client) -> dict:
    """ann's public chat: bob joins, then ann posts 5 messages; bob has read none of them."""
    chat = create_chat(client, "Lunch")
    added(bob_client, chat)
    for n in range(5):
        post_message(client, chat, f"msg {n}")
    return chat


def test_reading_answers_the_position_and_the_unread_count_and_writes_one_chat_read(bob, bob_client, five):
    before = database_state()

    response = mark_read(bob_client, five, 3)

    assert response.status_code == 200, response.content
    assert response.json() == {"last_read_seq": 3, "unread": 2}
    (event,) = new_events(before)
    assert summary([event]) == [("chat.read", [bob.pk])]
    assert event["chat_id"] == five["id"]
    assert event["payload"] == {"chat_id": five["id"], "username": "bob", "last_read_seq": 3, "unread": 2}
    assert Membership.objects.get(chat_id=five["id"], user=bob).last_read_seq == 3


@pytest.mark.parametrize("seq", [6, 99, 10**20])
def test_a_seq_beyond_the_last_message_is_clamped_to_it(bob_client, five, seq):
    before = database_state()

    assert mark_read(bob_client, five, seq).json() == {"last_read_seq": 5, "unread": 0}
    (event,) = new_events(before)
    assert event["payload"]["last_read_seq"] == 5


def test_reading_a_chat_with_no_messages_stays_at_0_and_writes_nothing(client):
    chat = create_chat(client, "Lunch")
    before = database_state()

    assert mark_read(client, chat, 1).json() == {"last_read_seq": 0, "unread": 0}
    assert database_state() == before


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_the_read_position_never_moves_back(bob_client, five, seq):
    mark_read(bob_client, five, 3)
    before = database_state()

    response = mark_read(bob_client, five, seq)

    assert response.status_code == 200
    assert response.json() == {"last_read_seq": 3, "unread": 2}
    assert database_state() == before  # no event: nothing moved


def test_a_new_message_counts_as_unread_after_the_position(client, bob_client, five):
    mark_read(bob_client, five, 5)
    post_message(client, five)

    assert chat_of(bob_client, five)["membership"] == {"role": "member", "last_read_seq": 5, "unread": 1}
    assert mark_read(bob_client, five, 6).json() == {"last_read_seq": 6, "unread": 0}


@pytest.mark.parametrize(
    "body",
    [
        {"seq": "3"},
        {"seq": 2.5},
        {"seq": 3.0},
        {"seq": True},
        {"seq": False},
        {"seq": 0},
        {"seq": -1},
        {"seq": None},
        {"seq": [3]},
        {},
        {"SEQ": 3},
    ],
    ids=repr,
)
def test_a_seq_that_is_not_an_integer_of_at_least_1_is_invalid_seq(bob_client, five, body):
    mark_read(bob_client, five, 2)
    before = database_state()

    assert_error(bob_client.post(url(five, "read/"), body, format="json"), 400, "invalid_seq")
    assert database_state() == before


@pytest.mark.parametrize("raw", ["[3]", '[{"seq": 3}]', "[]"])
def test_a_read_body_that_is_a_json_list_is_an_invalid_request_like_on_every_endpoint(bob_client, five, raw):
    """As for titles and texts (test_bad_input): a body that is not a JSON object has no `seq` to judge."""
    before = database_state()

    response = bob_client.generic("POST", url(five, "read/"), raw, content_type="application/json")

    assert_error(response, 400, "invalid_request")
    assert database_state() == before


def test_a_non_member_of_a_public_chat_keeps_no_read_position(carol_client, five):
    before = database_state()

    assert_error(mark_read(carol_client, five, 1), 403, "not_a_member")
    assert database_state() == before


# --- posting makes the author a member ------------------------------------------------------------


def test_posting_in_a_public_chat_makes_the_author_a_member(client, bob, bob_client):
    chat = create_chat(client, "Lunch")
    post_message(client, chat, "first")
    before = database_state()

    message = post_message(bob_client, chat, "hello")

    events = new_events(before)
    assert summary(events) == [("member.joined", [bob.pk]), ("message.created", None)]
    bob_member = member(client, chat, "bob")
    assert (bob_member["role"], bob_member["last_read_seq"]) == ("member", 2)  # read up to his own message
    assert chat_of(bob_client, chat)["membership"] == {"role": "member", "last_read_seq": 2, "unread": 0}
    assert chat_of(bob_client, chat)["member_count"] == 2
    assert events[1]["payload"] == message
    joined = events[0]["payload"]
    assert joined["chat_id"] == chat["id"]
    # as he joined: before his post, and one version before it
    assert joined["chat"] == {**public_view(chat), "last_seq": 1, "member_count": 2, "version": 2}
    assert (events[0]["version"], events[1]["version"], message["version"]) == (2, 3, 3)
    assert {key: joined["member"][key] for key in ("username", "role", "joined_at")} == {
        key: bob_member[key] for key in ("username", "role", "joined_at")
    }
    # one moment, one story: the member of the event has not read beyond the chat of the event
    assert joined["member"]["last_read_seq"] <= joined["chat"]["last_seq"], joined


def test_a_members_next_posts_write_no_membership_events(ann, client, bob_client):
    chat = create_chat(client, "Lunch")
    post_message(bob_client, chat, "joins")
    private = create_chat(client, "Secret", "private")
    added(client, private, "bob")
    before = database_state()

    post_message(bob_client, chat, "again")
    post_message(bob_client, private, "inside")
    post_message(client, chat, "owner")

    # ann's post passes bob's two unread messages: her other devices hear that she read them
    assert summary(new_events(before)) == [("message.created", None)] * 3 + [("chat.read", [ann.pk])]
    assert [chat_of(client, c)["member_count"] for c in (chat, private)] == [2, 2]


def test_replaying_an_idempotency_key_makes_no_membership_and_no_event(client, bob_client):
    chat = create_chat(client, "Lunch")
    first = post_message(bob_client, chat, "hello", key="k-1")
    assert remove(bob_client, chat, "bob").status_code == 204
    before = database_state()

    response = bob_client.post(url(chat, "messages/"), {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 200, response.content
    assert response.json() == first
    assert database_state() == before
    assert chat_of(bob_client, chat)["membership"] is None


# --- deleting a chat ------------------------------------------------------------------------------


def test_a_private_chats_deletion_is_addressed_to_all_its_members(client, ann, bob, carol):
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "bob")
    added(client, chat, "carol")
    last = chat_of(client, chat)
    before = database_state()

    assert client.delete(url(chat)).status_code == 204

    (event,) = new_events(before)
    assert event["event_type"] == "chat.deleted"
    assert sorted(event["user_ids"]) == sorted([ann.pk, bob.pk, carol.pk])
    assert event["payload"] == public_view(last)
    assert not Membership.objects.exists()


def test_a_public_chats_deletion_goes_to_every_lobby(client, bob_client):
    chat = create_chat(client, "Lunch")
    added(bob_client, chat)
    before = database_state()

    assert client.delete(url(chat)).status_code == 204

    assert summary(new_events(before)) == [("chat.deleted", None)]


def test_a_member_who_is_not_the_owner_may_not_delete_a_private_chat(client, bob_client):
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "bob")
    before = database_state()

    assert_error(bob_client.delete(url(chat)), 403, "permission_denied")
    assert database_state() == before


def test_staff_who_are_members_delete_a_private_chat(client, mod, mod_client, ann):
    chat = create_chat(client, "Secret", "private")
    added(client, chat, "mod")
    before = database_state()

    assert mod_client.delete(url(chat)).status_code == 204
    (event,) = new_events(before)
    assert sorted(event["user_ids"]) == sorted([ann.pk, mod.pk])


# --- accounts: deleted and deactivated users ------------------------------------------------------


def test_a_deleted_user_leaves_every_chat_first(client, bob, bob_client, carol_client):
    lunch = create_chat(client, "Lunch")
    secret = create_chat(client, "Secret", "private")
    tea = create_chat(carol_client, "Tea")
    post_message(client, lunch)
    added(bob_client, lunch)
    added(client, secret, "bob")
    added(bob_client, tea)
    bob_members = {chat["id"]: member(client if chat is not tea else carol_client, chat, "bob")
                   for chat in (lunch, secret, tea)}
    bob_id = bob.pk
    before = database_state()

    bob.delete()

    events = new_events(before)
    assert summary(events) == [("member.left", [bob_id])] * 3
    assert {event["chat_id"] for event in events} == {lunch["id"], secret["id"], tea["id"]}
    for event in events:
        assert event["payload"]["member"] == bob_members[event["chat_id"]]
        assert event["payload"]["chat"]["member_count"] == 1
    assert [chat_of(client, c)["member_count"] for c in (lunch, secret)] == [1, 1]
    assert chat_of(carol_client, tea)["member_count"] == 1
    assert [m["username"] for m in members(client, lunch)] == ["ann"]
    assert not Membership.objects.filter(user_id=bob_id).exists()


def test_a_user_who_owns_a_chat_cannot_be_deleted_and_leaves_nothing(client, ann, carol_client):
    create_chat(client, "Lunch")
    tea = create_chat(carol_client, "Tea")
    added(client, tea)
    before = database_state()

    with pytest.raises(ProtectedError):
        ann.delete()

    assert database_state() == before


@pytest.mark.parametrize("method, path, body", EVERY_CHAT_ENDPOINT, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("visibility", ["public", "private"])
def test_a_deactivated_user_is_refused_with_401_everywhere(client, bob, bob_client, make_user, visibility, method,
                                                           path, body):
    make_user("dave")
    chat = create_chat(client, "Lunch", visibility)
    added(client, chat, "bob")
    post_message(bob_client, chat)
    bob.is_active = False
    bob.save()
    before = database_state()

    assert_error(call(bob_client, method, chat["id"], path, body, "bob"), 401, "authentication_failed")
    assert database_state() == before  # the memberships are kept


@pytest.mark.parametrize("method, body", [("get", None), ("post", {"title": "Dinner"})])
def test_a_deactivated_user_can_neither_list_nor_create_chats(bob, bob_client, method, body):
    bob.is_active = False
    bob.save()
    before = database_state()

    response = bob_client.get("/api/chats/") if body is None else bob_client.post("/api/chats/", body, format="json")

    assert_error(response, 401, "authentication_failed")
    assert database_state() == before


# --- concurrency ----------------------------------------------------------------------------------


@pytest.fixture
def race(monkeypatch):
    """Call it once the scene is set: from then on two member requests reach their command at once (a barrier in
    front of the mediator), and every membership read inside a command is followed by a pause, so that without
    the chat's row lock both would read "not a member" (or "a member") before either wrote, and both would write."""

    def arm() -> None:
        hold_at_once(monkeypatch, members_api)
        pause_after_reads(monkeypatch, adapters.DjangoMembershipRepository, 0.2)

    return arm


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_joins_of_one_user_make_one_member_one_event_one_201_and_one_200(
    client, bob, make_client, race
):
    chat = create_chat(client, "Lunch")
    clients = [own_client(make_client, bob) for _ in range(2)]
    race()

    responses = at_once(*[lambda api=api: add(api, chat) for api in clients])

    assert not [r for r in responses if isinstance(r, Exception)], responses
    assert sorted(r.status_code for r in responses) == [200, 201], [r.content for r in responses]
    assert responses[0].json() == responses[1].json()
    assert Membership.objects.filter(chat_id=chat["id"], user=bob).count() == 1
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    assert list(OutboxEvent.objects.filter(event_type="member.joined").values_list("chat_id", flat=True)) == [
        uuid.UUID(chat["id"])
    ]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_leaves_of_one_user_make_one_event_one_204_and_one_member_not_found(
    client, bob, make_client, race
):
    chat = create_chat(client, "Lunch")
    added(client, chat, "bob")
    clients = [own_client(make_client, bob) for _ in range(2)]
    race()

    responses = at_once(*[lambda api=api: remove(api, chat, "bob") for api in clients])

    assert not [r for r in responses if isinstance(r, Exception)], responses
    assert sorted(r.status_code for r in responses) == [204, 404], [r.content for r in responses]
    assert_error(next(r for r in responses if r.status_code == 404), 404, "member_not_found")
    assert not Membership.objects.filter(chat_id=chat["id"], user=bob).exists()
    assert Chat.objects.get(pk=chat["id"]).member_count == 1
    assert OutboxEvent.objects.filter(event_type="member.left").count() == 1
