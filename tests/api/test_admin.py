"""The Django admin for chats, as a staff superuser: its pages, and its writes going through the mediator."""

import html
import re

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.utils import formats, timezone

from chats import admin
from chats.models import Chat, Membership, Message, OutboxEvent
from tests.api.support import database_state

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/chats/chat/"
ADD = "/admin/chats/chat/add/"


def change_url(chat_id: str) -> str:
    return f"/admin/chats/chat/{chat_id}/change/"


def delete_url(chat_id: str) -> str:
    return f"/admin/chats/chat/{chat_id}/delete/"


def new_events(before: tuple) -> list[dict]:
    seen = set(before[2])
    return [
        row.envelope for row in OutboxEvent.objects.order_by("id") if row.event_id not in seen
    ]


@pytest.fixture
def chats(client, bob_client) -> dict[str, dict]:
    """Three chats made through the API: "Lunch plans" (ann, 2 messages), "Team lunch" (bob, 1), "Dinner" (ann, 0)."""
    made = {}
    for api, title, texts in [
        (client, "Lunch plans", ["pizza?", "<b>sushi</b>!"]),
        (bob_client, "Team lunch", ["at noon"]),
        (client, "Dinner", []),
    ]:
        chat = api.post("/api/chats/", {"title": title}, format="json").json()
        for text in texts:
            api.post(f"/api/chats/{chat['id']}/messages/", {"text": text}, format="json")
        made[title] = chat
    return made


# --- changelist -----------------------------------------------------------------------------------


ROW = re.compile(
    r'<th class="field-title"><a href="[^"]*">(?P<title>[^<]*)</a></th>'
    r'<td class="field-owner[^"]*">(?P<owner>[^<]*)</td>'
    r'<td class="field-visibility[^"]*">(?P<visibility>[^<]*)</td>'
    r'<td class="field-member_count[^"]*">(?P<members>[^<]*)</td>'
    r'<td class="field-message_count[^"]*">(?P<messages>[^<]*)</td>'
    r'<td class="field-created_at[^"]*">(?P<created>[^<]*)</td>'
)


def test_the_changelist_shows_title_owner_visibility_members_message_count_and_created(
    admin_client, chats, client, bob
):
    client.post(f"/api/chats/{chats['Dinner']['id']}/members/", {"username": "bob"}, format="json")
    client.post("/api/chats/", {"title": "Secret", "visibility": "private"}, format="json")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    for header in ["Title", "Owner", "Visibility", "Member count", "Messages", "Created at"]:
        assert f">{header}</a></div>" in content, header
    shown = {
        row["title"]: (row["owner"], row["visibility"], row["members"], row["messages"], row["created"])
        for row in ROW.finditer(content)
    }
    created = {
        chat.title: formats.localize(timezone.template_localtime(chat.created_at)) for chat in Chat.objects.all()
    }
    assert shown == {
        "Lunch plans": ("ann", "public", "1", "2", created["Lunch plans"]),
        "Team lunch": ("bob", "public", "1", "1", created["Team lunch"]),
        "Dinner": ("ann", "public", "2", "0", created["Dinner"]),
        "Secret": ("ann", "private", "1", "0", created["Secret"]),
    }


@pytest.mark.parametrize(
    "visibility, expected",
    [("private", {"Secret"}), ("public", {"Lunch plans", "Team lunch", "Dinner"})],
)
def test_the_changelist_filters_on_visibility(admin_client, chats, client, visibility, expected):
    client.post("/api/chats/", {"title": "Secret", "visibility": "private"}, format="json")

    response = admin_client.get(CHANGELIST, {"visibility__exact": visibility})

    assert response.status_code == 200
    assert {row.title for row in response.context["cl"].result_list} == expected


def test_the_changelist_lists_newest_first(admin_client, chats):
    response = admin_client.get(CHANGELIST)

    assert [row.title for row in response.context["cl"].result_list] == ["Dinner", "Team lunch", "Lunch plans"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("lunch", {"Lunch plans", "Team lunch"}),
        ("LUNCH", {"Lunch plans", "Team lunch"}),
        ("plans", {"Lunch plans"}),
        ("bob", {"Team lunch"}),
        ("nothing like it", set()),
    ],
)
def test_the_changelist_searches_titles_and_owners(admin_client, chats, query, expected):
    response = admin_client.get(CHANGELIST, {"q": query})

    assert response.status_code == 200
    assert {row.title for row in response.context["cl"].result_list} == expected


# --- change page: the chat read-only, its members and messages ------------------------------------


def change_form(admin_client, chat_id: str) -> dict:
    """The change page's form as a browser posts it when nothing is touched: each inline's management form and
    its rows' hidden fields, read from the page's formsets, and the Save button."""
    page = admin_client.get(change_url(chat_id))
    assert page.status_code == 200
    data = {"_save": "Save"}
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        for form in inline.formset.forms:
            data.update({field.html_name: field.value() or "" for field in form.hidden_fields()})
    return data


def readonly_value(content: str, field: str) -> str:
    """What the change page shows for one of the chat's read-only fields."""
    match = re.search(rf'field-{field}\b.*?<div class="readonly">([^<]*)</div>', content, re.DOTALL)
    assert match, field
    return match[1]


def member_rows(response) -> list[tuple[str, str]]:
    """The member rows of a change page: (username, role), in the page's order."""
    (members,) = [inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is Membership]
    return [(form.instance.user.username, form.instance.role) for form in members.formset.initial_forms]


def with_new_member(data: dict, user) -> dict:
    """The form with one more member row, for `user` (the raw-id widget takes the user's id)."""
    total = int(data["memberships-TOTAL_FORMS"])
    return {**data, "memberships-TOTAL_FORMS": str(total + 1), f"memberships-{total}-user": str(user.pk)}


def without_member(admin_client, data: dict, chat_id: str, username: str) -> dict:
    """The form with the delete box of `username`'s row ticked."""
    rows = member_rows(admin_client.get(change_url(chat_id)))
    index = [name for name, _ in rows].index(username)
    return {**data, f"memberships-{index}-DELETE": "on"}


def memberships(chat_id: str) -> dict[str, str]:
    return dict(Membership.objects.filter(chat_id=chat_id).values_list("user__username", "role"))


def test_the_change_page_shows_the_chat_its_members_and_its_messages_read_only(admin_client, chats, client, bob):
    chat = chats["Lunch plans"]
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")

    response = admin_client.get(change_url(chat["id"]))

    assert response.status_code == 200
    content = response.content.decode()
    assert "Lunch plans" in content
    assert "pizza?" in content
    assert html.escape("<b>sushi</b>!") in content and "<b>sushi</b>" not in content
    assert list(response.context["adminform"].readonly_fields) == [
        "id", "title", "owner", "visibility", "member_count", "created_at", "last_seq"
    ]
    assert readonly_value(content, "visibility") == "public"
    assert readonly_value(content, "member_count") == "2"
    assert readonly_value(content, "last_seq") == "2"
    members, messages = response.context["inline_admin_formsets"]
    assert members.formset.model is Membership and messages.formset.model is Message
    assert member_rows(response) == [("ann", "owner"), ("bob", "member")]
    assert members.has_add_permission and members.has_delete_permission and not members.has_change_permission
    assert [field["name"] for field in members.fields()] == ["user", "role", "joined_at", "last_read_seq"]
    assert 'name="memberships-0-DELETE"' in content and 'name="memberships-1-DELETE"' in content
    assert 'name="memberships-0-user"' not in content  # existing rows are read-only
    assert 'name="memberships-__prefix__-user"' in content  # the row "Add another member" copies
    assert len(messages.formset.forms) == 2
    assert not messages.has_add_permission and not messages.has_change_permission
    assert not messages.has_delete_permission
    assert 'name="messages-0-text"' not in content
    assert 'name="title"' not in content and 'name="visibility"' not in content


def test_the_change_page_cannot_be_used_to_edit_a_chat(admin_client, chats):
    chat = chats["Lunch plans"]
    data = change_form(admin_client, chat["id"])
    before = database_state()

    response = admin_client.post(
        change_url(chat["id"]), {**data, "title": "Renamed", "visibility": "private", "member_count": "7"}
    )

    assert response.status_code == 302, response.content
    row = Chat.objects.get(pk=chat["id"])
    assert (row.title, row.visibility, row.member_count) == ("Lunch plans", "public", 1)
    assert database_state() == before
    assert memberships(chat["id"]) == {"ann": "owner"}


def test_adding_a_member_in_the_admin_goes_through_the_mediator(admin_client, chats, bob):
    chat = chats["Lunch plans"]
    data = change_form(admin_client, chat["id"])
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), with_new_member(data, bob))

    assert response.status_code == 302, response.content
    assert memberships(chat["id"]) == {"ann": "owner", "bob": "member"}
    assert Membership.objects.get(chat_id=chat["id"], user=bob).last_read_seq == 2  # no unread backlog
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    (event,) = new_events(before)
    assert event["event_type"] == "member.joined"
    assert event["chat_id"] == chat["id"]
    assert event["user_ids"] == [bob.pk]
    assert event["payload"]["member"]["username"] == "bob"
    assert event["payload"]["chat"]["member_count"] == 2
    # two messages, then bob: a member added in the admin is a change of the chat like any other
    assert event["version"] == event["payload"]["chat"]["version"] == 3
    assert Chat.objects.get(pk=chat["id"]).version == 3
    entry = LogEntry.objects.get(action_flag=CHANGE, object_id=chat["id"])
    assert "Added member" in entry.get_change_message()


def test_adding_someone_who_is_already_a_member_changes_nothing_and_is_no_error(admin_client, chats, client, bob):
    chat = chats["Lunch plans"]
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")
    data = change_form(admin_client, chat["id"])
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), with_new_member(data, bob), follow=True)

    assert response.status_code == 200
    assert [message.level_tag for message in response.context["messages"]] == ["success"]
    assert memberships(chat["id"]) == {"ann": "owner", "bob": "member"}
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    assert database_state() == before


def test_removing_a_member_in_the_admin_goes_through_the_mediator(admin_client, chats, client, bob):
    chat = chats["Lunch plans"]
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")
    data = without_member(admin_client, change_form(admin_client, chat["id"]), chat["id"], "bob")
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), data)

    assert response.status_code == 302, response.content
    assert memberships(chat["id"]) == {"ann": "owner"}
    assert Chat.objects.get(pk=chat["id"]).member_count == 1
    (event,) = new_events(before)
    assert event["event_type"] == "member.left"
    assert event["user_ids"] == [bob.pk]
    assert event["payload"]["member"]["username"] == "bob"
    assert event["payload"]["chat"]["member_count"] == 1
    # two messages (1, 2), bob joined (3), removed in the admin (4)
    assert event["version"] == event["payload"]["chat"]["version"] == 4
    assert Chat.objects.get(pk=chat["id"]).version == 4
    entry = LogEntry.objects.get(action_flag=CHANGE, object_id=chat["id"])
    assert "Deleted member" in entry.get_change_message()


def test_removing_the_owner_in_the_admin_shows_the_error_and_changes_nothing(admin_client, chats, client, bob):
    chat = chats["Lunch plans"]
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")
    data = without_member(admin_client, change_form(admin_client, chat["id"]), chat["id"], "ann")
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), data, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(change_url(chat["id"]), 302)]
    assert [(message.level_tag, str(message)) for message in response.context["messages"]] == [
        ("error", "ann could not be removed: The owner cannot leave the chat; delete it instead. Nothing was changed.")
    ]
    assert memberships(chat["id"]) == {"ann": "owner", "bob": "member"}
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    assert database_state() == before
    assert not LogEntry.objects.exists()


def test_adding_an_inactive_user_in_the_admin_shows_the_error_and_changes_nothing(
    admin_client, chats, client, bob, make_user
):
    chat = chats["Lunch plans"]
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")
    gone = make_user("gone")
    gone.is_active = False
    gone.save()
    # Removals run first: bob's, which succeeds, is undone with the refused addition.
    data = without_member(admin_client, change_form(admin_client, chat["id"]), chat["id"], "bob")
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), with_new_member(data, gone), follow=True)

    assert response.status_code == 200
    assert [(message.level_tag, str(message)) for message in response.context["messages"]] == [
        ("error", "gone could not be added: No active user is called 'gone'. Nothing was changed.")
    ]
    assert memberships(chat["id"]) == {"ann": "owner", "bob": "member"}
    assert Chat.objects.get(pk=chat["id"]).member_count == 2
    assert database_state() == before
    assert not LogEntry.objects.exists()


def test_adding_an_unknown_user_id_is_a_form_error(admin_client, chats):
    chat = chats["Lunch plans"]
    data = change_form(admin_client, chat["id"])
    before = database_state()

    response = admin_client.post(
        change_url(chat["id"]), {**data, "memberships-TOTAL_FORMS": "2", "memberships-1-user": "999999"}
    )

    assert response.status_code == 200
    members, _ = response.context["inline_admin_formsets"]
    assert members.formset.errors[1].get("user"), members.formset.errors
    assert database_state() == before
    assert memberships(chat["id"]) == {"ann": "owner"}


def test_staff_manage_the_members_of_a_private_chat_they_are_not_in(admin_client, admin_user, client, bob):
    chat = client.post("/api/chats/", {"title": "Secret", "visibility": "private"}, format="json").json()
    before = database_state()

    page = admin_client.get(change_url(chat["id"]))
    added = admin_client.post(change_url(chat["id"]), with_new_member(change_form(admin_client, chat["id"]), bob))
    after_adding = memberships(chat["id"])
    data = without_member(admin_client, change_form(admin_client, chat["id"]), chat["id"], "bob")
    removed = admin_client.post(change_url(chat["id"]), data)

    assert page.status_code == 200 and member_rows(page) == [("ann", "owner")]
    assert added.status_code == 302 and removed.status_code == 302
    assert after_adding == {"ann": "owner", "bob": "member"}
    assert memberships(chat["id"]) == {"ann": "owner"}
    assert not Membership.objects.filter(user=admin_user).exists()
    events = new_events(before)
    assert [(event["event_type"], event["user_ids"]) for event in events] == [
        ("member.joined", [bob.pk]),
        ("member.left", [bob.pk]),
    ]


def test_a_member_added_in_the_admin_sees_the_private_chat_in_the_api(admin_client, client, bob, bob_client):
    chat = client.post("/api/chats/", {"title": "Secret", "visibility": "private"}, format="json").json()

    admin_client.post(change_url(chat["id"]), with_new_member(change_form(admin_client, chat["id"]), bob))

    (listed,) = bob_client.get("/api/chats/").json()["results"]
    assert (listed["title"], listed["member_count"], listed["membership"]["role"]) == ("Secret", 2, "member")


def test_the_change_page_shows_the_first_members_and_the_newest_messages_only(
    admin_client, chats, client, make_user, monkeypatch
):
    chat = chats["Lunch plans"]
    for name in ["carl", "dora", "emil"]:
        make_user(name)
        client.post(f"/api/chats/{chat['id']}/members/", {"username": name}, format="json")
    monkeypatch.setattr(admin.MembershipFormSet, "shown", 3)
    monkeypatch.setattr(admin.MessageInline.formset, "shown", 1)

    response = admin_client.get(change_url(chat["id"]))
    data = change_form(admin_client, chat["id"])
    saved = admin_client.post(change_url(chat["id"]), without_member(admin_client, data, chat["id"], "dora"))

    assert member_rows(response) == [("ann", "owner"), ("carl", "member"), ("dora", "member")]
    _, messages = response.context["inline_admin_formsets"]
    assert [form.instance.text for form in messages.formset.forms] == ["<b>sushi</b>!"]
    assert saved.status_code == 302, saved.content
    assert memberships(chat["id"]) == {"ann": "owner", "carl": "member", "emil": "member"}


# --- add ------------------------------------------------------------------------------------------


def test_the_add_form_asks_for_a_title_and_a_visibility_public_by_default(admin_client):
    response = admin_client.get(ADD)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.fields) == ["title", "visibility"]
    assert [value for value, _ in form.fields["visibility"].choices] == ["public", "private"]
    assert form["visibility"].value() == "public"
    assert 'type="radio" name="visibility" value="private"' in response.content.decode()


def test_adding_a_chat_in_the_admin_goes_through_the_mediator(admin_client, admin_user):
    before = database_state()

    response = admin_client.post(ADD, {"title": "  Town hall  "})

    assert response.status_code == 302, response.content
    chat = Chat.objects.get()
    assert (chat.title, chat.title_key, chat.owner, chat.last_seq) == ("Town hall", "town hall", admin_user, 0)
    assert (chat.visibility, chat.member_count) == ("public", 1)
    assert memberships(chat.pk) == {"admin": "owner"}
    (event,) = new_events(before)
    assert event["event_type"] == "chat.created"
    assert event["chat_id"] == str(chat.pk)
    assert event["payload"]["title"] == "Town hall"
    assert event["payload"]["owner"] == admin_user.username
    assert event["payload"]["id"] == str(chat.pk)


def test_the_admin_log_points_at_the_chat_the_mediator_created(admin_client):
    admin_client.post(ADD, {"title": "Town hall"})

    chat = Chat.objects.get()
    entry = LogEntry.objects.get(action_flag=ADDITION)
    assert entry.object_id == str(chat.pk)
    assert entry.get_edited_object() == chat


def test_adding_a_chat_in_the_admin_names_it_in_the_confirmation_and_the_log(admin_client):
    response = admin_client.post(ADD, {"title": "  Town hall  "}, follow=True)

    chat = Chat.objects.get()
    assert [str(message) for message in response.context["messages"]] == [
        f"The chat “<a href=\"{change_url(chat.pk)}\">Town hall</a>” was added successfully."
    ]
    assert LogEntry.objects.get(action_flag=ADDITION).object_repr == "Town hall"


def test_a_chat_added_in_the_admin_is_visible_in_the_api(admin_client, client):
    admin_client.post(ADD, {"title": "Town hall"})

    (listed,) = client.get("/api/chats/").json()["results"]
    assert (listed["title"], listed["owner"]) == ("Town hall", "admin")


def test_a_private_chat_added_in_the_admin_has_its_creator_as_owner_and_only_member(
    admin_client, admin_user, client
):
    before = database_state()

    response = admin_client.post(ADD, {"title": "Staff room", "visibility": "private"})

    assert response.status_code == 302, response.content
    chat = Chat.objects.get()
    assert (chat.title, chat.visibility, chat.member_count, chat.owner) == ("Staff room", "private", 1, admin_user)
    assert memberships(chat.pk) == {"admin": "owner"}
    assert Membership.objects.get(chat=chat).last_read_seq == 0
    (event,) = new_events(before)
    assert event["event_type"] == "chat.created"
    assert event["payload"]["visibility"] == "private" and event["payload"]["member_count"] == 1
    assert event["user_ids"] == [admin_user.pk]
    assert client.get("/api/chats/").json()["results"] == []  # ann is not a member


def test_an_unknown_visibility_re_renders_the_add_form_and_writes_nothing(admin_client):
    before = database_state()

    response = admin_client.post(ADD, {"title": "Town hall", "visibility": "secret"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get("visibility")
    assert database_state() == before


@pytest.mark.parametrize(
    "title",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("x" * 256, id="too-long"),
        pytest.param("  " + "x" * 256 + "  ", id="too-long-inside-spaces"),
        pytest.param("LUNCH PLANS", id="taken-other-case"),
        pytest.param("  Lunch plans ", id="taken-with-spaces"),
    ],
)
def test_an_invalid_or_taken_title_re_renders_the_add_form_and_writes_nothing(admin_client, chats, title):
    before = database_state()

    response = admin_client.post(ADD, {"title": title})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors.get("title"), form.errors
    assert 'class="errorlist' in response.content.decode()
    assert database_state() == before
    assert not LogEntry.objects.exists()


# --- delete ---------------------------------------------------------------------------------------


def test_deleting_a_chat_in_the_admin_writes_a_chat_deleted_event(admin_client, chats):
    chat = chats["Lunch plans"]
    before = database_state()

    confirm = admin_client.get(delete_url(chat["id"]))
    response = admin_client.post(delete_url(chat["id"]), {"post": "yes"})

    assert confirm.status_code == 200
    assert response.status_code == 302
    assert not Chat.objects.filter(pk=chat["id"]).exists()
    assert not Message.objects.filter(chat_id=chat["id"]).exists()
    (event,) = new_events(before)
    assert event["event_type"] == "chat.deleted"
    assert event["chat_id"] == chat["id"]
    # The chat as the API showed it to ann, less her own `membership` (an event goes to many users), as it was
    # last: two messages, two changes; the deletion carries that last version (it is no change of content).
    assert event["payload"] == {
        **{key: value for key, value in chat.items() if key != "membership"}, "last_seq": 2, "version": 2
    }
    assert event["version"] == 2
    assert "user_ids" not in event  # a public chat's deletion goes to every lobby
    assert LogEntry.objects.filter(action_flag=DELETION, object_id=chat["id"]).count() == 1


def test_deleting_a_chat_in_the_admin_returns_to_the_chat_list(admin_client, chats):
    response = admin_client.post(delete_url(chats["Dinner"]["id"]), {"post": "yes"})

    assert response.status_code == 302
    assert response.url == CHANGELIST
    followed = admin_client.get(response.url)
    assert [str(message) for message in followed.context["messages"]] == [
        "The chat “Dinner” was deleted successfully."
    ]


def test_the_bulk_delete_action_writes_one_chat_deleted_event_per_chat(admin_client, chats):
    doomed = [chats["Lunch plans"]["id"], chats["Team lunch"]["id"]]
    before = database_state()

    confirm = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": doomed})
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": doomed, "post": "yes"}
    )

    assert confirm.status_code == 200
    assert response.status_code == 302
    assert list(Chat.objects.values_list("title", flat=True)) == ["Dinner"]
    events = new_events(before)
    assert [event["event_type"] for event in events] == ["chat.deleted", "chat.deleted"]
    assert sorted(event["chat_id"] for event in events) == sorted(doomed)
    assert Message.objects.count() == 0


def test_the_bulk_delete_confirmation_page_deletes_nothing(admin_client, chats):
    before = database_state()

    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [chats["Dinner"]["id"]]}
    )

    assert response.status_code == 200
    assert database_state() == before


def test_staff_delete_a_private_chat_they_are_not_in(admin_client, admin_user, ann, client, bob):
    chat = client.post("/api/chats/", {"title": "Secret", "visibility": "private"}, format="json").json()
    client.post(f"/api/chats/{chat['id']}/members/", {"username": "bob"}, format="json")
    before = database_state()

    confirm = admin_client.get(delete_url(chat["id"]))
    response = admin_client.post(delete_url(chat["id"]), {"post": "yes"})

    assert confirm.status_code == 200
    assert response.status_code == 302
    assert not Chat.objects.filter(pk=chat["id"]).exists()
    assert not Membership.objects.filter(chat_id=chat["id"]).exists()
    (event,) = new_events(before)
    assert event["event_type"] == "chat.deleted"
    assert sorted(event["user_ids"]) == sorted([ann.pk, bob.pk])
    assert admin_user.pk not in event["user_ids"]
