"""The Django admin for chats, as a staff superuser: its pages, and its writes going through the mediator."""

import html
import re

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.utils import formats, timezone

from chats.models import Chat, Message, OutboxEvent
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
    r'<td class="field-message_count[^"]*">(?P<messages>[^<]*)</td>'
    r'<td class="field-created_at[^"]*">(?P<created>[^<]*)</td>'
)


def test_the_changelist_shows_title_owner_message_count_and_created(admin_client, chats):
    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    for header in ["Title", "Owner", "Messages", "Created at"]:
        assert f">{header}</a></div>" in content, header
    shown = {row["title"]: (row["owner"], row["messages"], row["created"]) for row in ROW.finditer(content)}
    created = {
        chat.title: formats.localize(timezone.template_localtime(chat.created_at)) for chat in Chat.objects.all()
    }
    assert shown == {
        "Lunch plans": ("ann", "2", created["Lunch plans"]),
        "Team lunch": ("bob", "1", created["Team lunch"]),
        "Dinner": ("ann", "0", created["Dinner"]),
    }


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


# --- change (view-only) page ----------------------------------------------------------------------


def test_the_change_page_shows_the_chat_and_its_messages_read_only(admin_client, chats):
    chat = chats["Lunch plans"]

    response = admin_client.get(change_url(chat["id"]))

    assert response.status_code == 200
    content = response.content.decode()
    assert "Lunch plans" in content
    assert "pizza?" in content
    assert html.escape("<b>sushi</b>!") in content and "<b>sushi</b>" not in content
    (inline,) = response.context["inline_admin_formsets"]
    assert inline.formset.model is Message
    assert len(inline.formset.forms) == 2
    assert not inline.has_add_permission and not inline.has_change_permission
    assert not inline.has_delete_permission
    assert 'name="messages-0-text"' not in content
    assert 'name="title"' not in content
    assert 'name="_save"' not in content


def test_the_change_page_cannot_be_used_to_edit_a_chat(admin_client, chats):
    chat = chats["Lunch plans"]
    before = database_state()

    response = admin_client.post(change_url(chat["id"]), {"title": "Renamed"})

    assert response.status_code == 403
    assert Chat.objects.get(pk=chat["id"]).title == "Lunch plans"
    assert database_state() == before


# --- add ------------------------------------------------------------------------------------------


def test_the_add_form_asks_for_a_title_only(admin_client):
    response = admin_client.get(ADD)

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["title"]


def test_adding_a_chat_in_the_admin_goes_through_the_mediator(admin_client, admin_user):
    before = database_state()

    response = admin_client.post(ADD, {"title": "  Town hall  "})

    assert response.status_code == 302, response.content
    chat = Chat.objects.get()
    assert (chat.title, chat.title_key, chat.owner, chat.last_seq) == ("Town hall", "town hall", admin_user, 0)
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

    assert [str(message) for message in response.context["messages"]] == [
        "The chat “Town hall” was added successfully."
    ]
    assert LogEntry.objects.get(action_flag=ADDITION).object_repr == "Town hall"


def test_a_chat_added_in_the_admin_is_visible_in_the_api(admin_client, client):
    admin_client.post(ADD, {"title": "Town hall"})

    (listed,) = client.get("/api/chats/").json()["results"]
    assert (listed["title"], listed["owner"]) == ("Town hall", "admin")


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
    assert event["payload"] == {**chat, "last_seq": 2}
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
