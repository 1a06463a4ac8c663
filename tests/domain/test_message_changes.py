"""Editing and deleting messages, and the chat version, through the mediator on the in-memory fakes
(DESIGN.md, "Editing and deleting messages; the chat version").

Every change is checked where it is stored (`database.outbox`, the messages, the chat) and where the mediator
handed it on after the commit (`published`); every refusal and every no-op is checked to change nothing at all.
"""

import copy
import dataclasses
from datetime import datetime, timezone
from uuid import uuid4

import pytest

from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
    DeleteMessageCommand,
    EditMessageCommand,
    MarkReadCommand,
    RemoveMemberCommand,
)
from messaging_domain.events import (
    ChatDeletedEvent,
    ChatReadEvent,
    MemberJoinedEvent,
    MemberLeftEvent,
    MessageDeletedEvent,
    MessageEditedEvent,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
)
from messaging_domain.exceptions import (
    ChatNotFound,
    DomainError,
    IdempotencyKeyReused,
    InvalidText,
    MemberNotFound,
    MessageDeleted,
    MessageNotFound,
    NotAllowed,
    OwnerCannotLeave,
)
from messaging_domain.values import Participant, Text

pytestmark = pytest.mark.usefixtures("registered")

# The changes of a chat's content: each raises its version by exactly one.
VERSIONED = (NewMessageReceivedEvent, MessageEditedEvent, MessageDeletedEvent, MemberJoinedEvent, MemberLeftEvent)


# --- helpers -------------------------------------------------------------------------------------------------


def create(mediator, owner, visibility="public", title="Lunch"):
    return mediator.handle_command(CreateChatCommand(title=title, owner=owner, visibility=visibility))


def post(mediator, chat, author, text="hi", key=None):
    return mediator.handle_command(
        CreateMessageCommand(chat_id=chat.id, text=text, author=author, idempotency_key=key)
    )


def edit(mediator, chat, seq, text, editor, key=None):
    return mediator.handle_command(
        EditMessageCommand(chat_id=chat.id, seq=seq, text=text, editor=editor, idempotency_key=key)
    )


def delete(mediator, chat, seq, requested_by):
    return mediator.handle_command(DeleteMessageCommand(chat_id=chat.id, seq=seq, requested_by=requested_by))


def add(mediator, chat, username, requested_by):
    return mediator.handle_command(AddMemberCommand(chat_id=chat.id, username=username, requested_by=requested_by))


def remove(mediator, chat, username, requested_by):
    return mediator.handle_command(
        RemoveMemberCommand(chat_id=chat.id, username=username, requested_by=requested_by)
    )


def mark_read(mediator, chat, reader, seq):
    return mediator.handle_command(MarkReadCommand(chat_id=chat.id, seq=seq, reader=reader))


def stored(database, chat, seq):
    """The message as the database keeps it now."""
    return next(m for m in database.messages.values() if m.chat_id == chat.id and m.seq == seq)


def version_of(database, chat) -> int:
    return database.chats[chat.id].version


def new_events(database, published, since):
    """The events recorded after the first `since`, checked to be the same in the outbox and published."""
    assert [e.event_id for e in published] == [e.event_id for e in database.outbox]
    return database.outbox[since:]


def versions(database, chat) -> list[int]:
    """The versions of the chat's changes, in the order their events were committed."""
    return [e.version for e in database.outbox if isinstance(e, VERSIONED) and e.chat_id == chat.id]


class Snapshot:
    """Everything a command could change (chats with their versions, messages, memberships, remembered edit
    keys, the outbox and what was published), to show that a refused or no-op command changed nothing."""

    def __init__(self, database, published):
        self.database = database
        self.published = published
        self.state = self.take()

    def take(self):
        return copy.deepcopy((
            {chat_id: dataclasses.asdict(chat) for chat_id, chat in self.database.chats.items()},
            dict(self.database.messages),
            {key: dataclasses.asdict(m) for key, m in self.database.memberships.items()},
            dict(self.database.edit_keys),
            [e.event_id for e in self.database.outbox],
            [e.event_id for e in self.published],
        ))

    def unchanged(self) -> bool:
        return self.take() == self.state


@pytest.fixture
def lunch(mediator, ann):
    """ann's public chat with her message 1 ("hi") at version 1."""
    chat = create(mediator, ann)
    post(mediator, chat, ann, "hi")
    return chat


# --- editing -------------------------------------------------------------------------------------------------


def test_the_author_edits_their_message_and_message_edited_carries_it_after_the_edit(
    mediator, database, published, ann, lunch
):
    before = stored(database, lunch, 1)
    since = len(database.outbox)
    started = datetime.now(timezone.utc)

    change = edit(mediator, lunch, 1, "  hello there \n", ann)

    after = stored(database, lunch, 1)
    assert change.changed is True
    assert change.message == after
    assert after.text == Text("hello there") and after.shown_text == "hello there"
    assert started <= after.edited_at <= datetime.now(timezone.utc)
    assert after.version == 2 == version_of(database, lunch)
    # the same message: only its text, edited_at and version change
    assert (after.id, after.seq, after.author, after.created_at, after.created_version, after.deleted) == (
        before.id, before.seq, before.author, before.created_at, 1, False
    )
    assert database.chats[lunch.id].last_seq == 1
    (event,) = new_events(database, published, since)
    assert isinstance(event, MessageEditedEvent)
    assert event.event_type == "message.edited"
    assert event.message == after
    assert event.version == 2 and event.chat_id == lunch.id


def test_each_edit_is_a_new_version_and_moves_edited_at(mediator, database, ann, lunch):
    first = edit(mediator, lunch, 1, "one", ann).message
    second = edit(mediator, lunch, 1, "two", ann).message

    assert (first.version, second.version) == (2, 3)
    assert second.edited_at >= first.edited_at
    assert stored(database, lunch, 1).text == Text("two")
    assert versions(database, lunch) == [1, 2, 3]


def test_an_event_keeps_the_message_as_it_was_at_its_change(mediator, database, ann, lunch):
    edit(mediator, lunch, 1, "one", ann)
    edit(mediator, lunch, 1, "two", ann)
    delete(mediator, lunch, 1, ann)

    created, first, second, deleted = [e for e in database.outbox if e.chat_id == lunch.id][1:]
    assert [created.message.shown_text, first.message.shown_text, second.message.shown_text] == ["hi", "one", "two"]
    assert (deleted.message.shown_text, deleted.message.deleted) == ("", True)
    assert created.message.edited_at is None and not created.message.deleted


def test_a_4096_character_text_is_accepted_as_an_edit(mediator, database, ann, lunch):
    edit(mediator, lunch, 1, "  " + "é" * 4096 + "  ", ann)

    assert stored(database, lunch, 1).shown_text == "é" * 4096


@pytest.mark.parametrize("editor", ["bob", "moderator", "owner"])
def test_only_the_author_may_edit_a_message_not_the_chats_owner_or_staff(
    mediator, database, published, ann, bob, moderator, editor
):
    # bob's message in ann's chat; ann (owner), bob's fellow member carol... none but bob may edit it
    chat = create(mediator, ann)
    post(mediator, chat, bob, "bob's")
    if editor == "bob":
        post(mediator, chat, ann, "ann's")
        seq, who = 2, bob  # bob may not edit ann's message either
    else:
        seq, who = 1, {"moderator": moderator, "owner": ann}[editor]
    snapshot = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        edit(mediator, chat, seq, "taken over", who)

    assert snapshot.unchanged()


@pytest.mark.parametrize("who", ["author", "bob"])
def test_a_deleted_message_cannot_be_edited(mediator, database, published, ann, bob, lunch, who):
    delete(mediator, lunch, 1, ann)
    snapshot = Snapshot(database, published)

    with pytest.raises((MessageDeleted, NotAllowed)) as refused:
        edit(mediator, lunch, 1, "back again", ann if who == "author" else bob)

    if who == "author":
        assert isinstance(refused.value, MessageDeleted)
        assert refused.value.code == "message_deleted"
    assert snapshot.unchanged()
    assert stored(database, lunch, 1).text is None


@pytest.mark.parametrize("text", ["hi", "  hi  ", "\thi\n"])
def test_an_edit_to_the_same_text_changes_nothing_and_records_no_event(mediator, database, published, ann, lunch, text):
    snapshot = Snapshot(database, published)

    change = edit(mediator, lunch, 1, text, ann)

    assert change.changed is False
    assert change.message == stored(database, lunch, 1)
    assert change.message.edited_at is None and change.message.version == 1
    assert snapshot.unchanged()


@pytest.mark.parametrize(
    "text", ["", " ", " \t\n ", "x" * 4097, "  " + "x" * 4097 + "  ", None, 42, True, ["hi"], {"text": "hi"}],
    ids=["empty", "space", "whitespace", "4097", "4097-in-spaces", "none", "int", "bool", "list", "dict"],
)
def test_an_invalid_text_is_refused_and_nothing_is_recorded(mediator, database, published, ann, lunch, text):
    snapshot = Snapshot(database, published)

    with pytest.raises(InvalidText):
        edit(mediator, lunch, 1, text, ann)

    assert snapshot.unchanged()


@pytest.mark.parametrize("seq", [0, -1, 2, 99, 2**31])
@pytest.mark.parametrize("action", ["edit", "delete"])
def test_an_unknown_seq_is_message_not_found(mediator, database, published, ann, lunch, seq, action):
    snapshot = Snapshot(database, published)

    with pytest.raises(MessageNotFound) as refused:
        if action == "edit":
            edit(mediator, lunch, seq, "new", ann)
        else:
            delete(mediator, lunch, seq, ann)

    assert refused.value.code == "message_not_found"
    assert snapshot.unchanged()


@pytest.mark.parametrize("action", ["edit", "delete"])
def test_a_seq_names_a_message_of_its_own_chat_only(mediator, database, published, ann, lunch, action):
    other = create(mediator, ann, title="Dinner")  # no messages; lunch has seq 1
    snapshot = Snapshot(database, published)

    with pytest.raises(MessageNotFound):
        if action == "edit":
            edit(mediator, other, 1, "new", ann)
        else:
            delete(mediator, other, 1, ann)

    assert snapshot.unchanged()


# --- deleting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deleter", ["author", "owner", "staff"])
def test_the_author_the_chats_owner_or_staff_delete_a_message_leaving_a_tombstone(
    mediator, database, published, ann, bob, moderator, deleter
):
    chat = create(mediator, ann)
    post(mediator, chat, bob, "bob's")  # bob joins (1), posts (2)
    edit(mediator, chat, 1, "bob's, edited", bob)  # 3
    before = stored(database, chat, 1)
    who = {"author": bob, "owner": ann, "staff": moderator}[deleter]  # staff need not be a member
    since = len(database.outbox)

    change = delete(mediator, chat, 1, who)

    tombstone = stored(database, chat, 1)
    assert change.changed is True and change.message == tombstone
    assert tombstone.text is None and tombstone.shown_text == "" and tombstone.deleted is True
    assert tombstone.version == 4 == version_of(database, chat)
    # the seq, the author, the creation and the last edit stay: a tombstone keeps its place in history
    assert (tombstone.id, tombstone.seq, tombstone.author, tombstone.created_at, tombstone.created_version) == (
        before.id, 1, bob, before.created_at, 2
    )
    assert tombstone.edited_at == before.edited_at
    assert database.chats[chat.id].last_seq == 1
    (event,) = new_events(database, published, since)
    assert isinstance(event, MessageDeletedEvent)
    assert event.event_type == "message.deleted"
    assert event.message == tombstone and event.deleted_by == who.username
    assert event.version == 4


@pytest.mark.parametrize("deleter", ["member", "non-member", "other-author"])
def test_nobody_else_may_delete_a_message(mediator, database, published, ann, bob, carol, writer, deleter):
    chat = create(mediator, ann)
    post(mediator, chat, bob, "bob's")
    post(mediator, chat, carol, "carol's")  # carol: a member who wrote in the chat too
    add(mediator, chat, "writer", ann)  # writer: a member who never wrote
    who = {"member": writer, "non-member": Participant(id=99, username="stranger"), "other-author": carol}[deleter]
    snapshot = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        delete(mediator, chat, 1, who)  # bob's

    assert snapshot.unchanged()
    assert stored(database, chat, 1).deleted is False


def test_the_owner_may_not_delete_a_message_in_someone_elses_chat_they_only_wrote_in(
    mediator, database, published, ann, bob
):
    # bob owns his own chat elsewhere; in ann's chat he is a plain member and may not delete ann's message
    create(mediator, bob, title="Bob's")
    chat = create(mediator, ann)
    post(mediator, chat, ann, "ann's")
    post(mediator, chat, bob, "bob's")
    snapshot = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        delete(mediator, chat, 1, bob)

    assert snapshot.unchanged()


def test_deleting_a_deleted_message_again_changes_nothing(mediator, database, published, ann, moderator, lunch):
    first = delete(mediator, lunch, 1, ann)
    snapshot = Snapshot(database, published)

    again = delete(mediator, lunch, 1, ann)
    by_staff = delete(mediator, lunch, 1, moderator)

    assert first.changed is True
    assert again.changed is False and by_staff.changed is False
    assert again.message == by_staff.message == first.message == stored(database, lunch, 1)
    assert snapshot.unchanged()


def test_a_message_after_a_tombstone_gets_the_next_seq(mediator, database, ann, lunch):
    delete(mediator, lunch, 1, ann)

    posted = post(mediator, lunch, ann, "after").message

    assert (posted.seq, posted.version) == (2, 3)
    assert stored(database, lunch, 1).deleted and not stored(database, lunch, 2).deleted


def test_a_message_that_was_never_edited_keeps_edited_at_none_once_deleted(mediator, database, ann, lunch):
    delete(mediator, lunch, 1, ann)

    assert stored(database, lunch, 1).edited_at is None


# --- who sees the chat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["stranger", "staff", "removed-author"])
@pytest.mark.parametrize("action", ["edit", "delete"])
def test_a_private_chat_does_not_exist_for_a_non_member(
    mediator, database, published, ann, bob, carol, moderator, who, action
):
    chat = create(mediator, ann, "private")
    add(mediator, chat, "bob", ann)
    post(mediator, chat, bob, "bob's")
    remove(mediator, chat, "bob", ann)  # bob wrote message 1, then was removed: it is not his to change now
    requester = {"stranger": carol, "staff": moderator, "removed-author": bob}[who]
    snapshot = Snapshot(database, published)

    with pytest.raises(ChatNotFound) as refused:
        if action == "edit":
            edit(mediator, chat, 1, "mine", requester)
        else:
            delete(mediator, chat, 1, requester)

    assert refused.value.code == "chat_not_found"
    assert snapshot.unchanged()


@pytest.mark.parametrize("seq", [1, 99])
@pytest.mark.parametrize("action", ["edit", "delete"])
def test_a_non_member_learns_chat_not_found_before_anything_about_the_seq(
    mediator, database, published, ann, carol, seq, action
):
    chat = create(mediator, ann, "private")
    post(mediator, chat, ann, "secret")
    snapshot = Snapshot(database, published)

    with pytest.raises(ChatNotFound):
        if action == "edit":
            edit(mediator, chat, seq, "x", carol)
        else:
            delete(mediator, chat, seq, carol)

    assert snapshot.unchanged()


@pytest.mark.parametrize("action", ["edit", "delete"])
def test_an_unknown_or_deleted_chat_is_chat_not_found(mediator, database, published, ann, lunch, action):
    mediator.handle_command(DeleteChatCommand(chat_id=lunch.id, requested_by=ann))
    unknown = dataclasses.replace(lunch, id=uuid4())
    snapshot = Snapshot(database, published)

    for chat in (lunch, unknown):
        with pytest.raises(ChatNotFound):
            if action == "edit":
                edit(mediator, chat, 1, "x", ann)
            else:
                delete(mediator, chat, 1, ann)

    assert snapshot.unchanged()


def test_an_author_who_left_a_public_chat_still_edits_and_deletes_their_message_without_rejoining(
    mediator, database, published, ann, bob
):
    chat = create(mediator, ann)
    post(mediator, chat, bob, "bob's")  # joined 1, posted 2
    remove(mediator, chat, "bob", bob)  # left 3
    since = len(database.outbox)

    edit(mediator, chat, 1, "bob's, edited", bob)
    delete(mediator, chat, 1, bob)

    assert [type(e) for e in new_events(database, published, since)] == [MessageEditedEvent, MessageDeletedEvent]
    assert versions(database, chat) == [1, 2, 3, 4, 5]
    assert (chat.id, bob.id) not in database.memberships  # editing is not joining
    assert database.chats[chat.id].member_count == 1


# --- Idempotency-Key on edits --------------------------------------------------------------------------------


def test_a_repeated_edit_with_its_key_answers_with_the_message_and_records_nothing(
    mediator, database, published, ann, lunch
):
    first = edit(mediator, lunch, 1, "hello", ann, key="edit-1")
    snapshot = Snapshot(database, published)

    again = edit(mediator, lunch, 1, "hello", ann, key="edit-1")
    stripped = edit(mediator, lunch, 1, "  hello \n", ann, key="edit-1")

    assert first.changed is True
    assert again.changed is False and stripped.changed is False
    assert again.message == stripped.message == first.message
    assert snapshot.unchanged()


def test_a_repeated_key_answers_with_the_message_as_it_is_now(mediator, database, published, ann, lunch):
    edit(mediator, lunch, 1, "hello", ann, key="edit-1")
    edit(mediator, lunch, 1, "changed my mind", ann)  # a later edit, without a key
    snapshot = Snapshot(database, published)

    again = edit(mediator, lunch, 1, "hello", ann, key="edit-1")

    # not applied a second time: the later edit stands
    assert again.changed is False
    assert again.message == stored(database, lunch, 1)
    assert again.message.shown_text == "changed my mind"
    assert snapshot.unchanged()


def test_a_repeated_key_after_the_message_was_deleted_answers_with_the_tombstone(
    mediator, database, published, ann, lunch
):
    edit(mediator, lunch, 1, "hello", ann, key="edit-1")
    delete(mediator, lunch, 1, ann)
    snapshot = Snapshot(database, published)

    again = edit(mediator, lunch, 1, "hello", ann, key="edit-1")

    assert again.changed is False
    assert again.message.deleted and again.message.text is None
    assert snapshot.unchanged()


@pytest.mark.parametrize("other", ["seq", "text", "chat"])
def test_a_key_used_for_another_edit_is_idempotency_key_reused(mediator, database, published, ann, lunch, other):
    post(mediator, lunch, ann, "second")
    dinner = create(mediator, ann, title="Dinner")
    post(mediator, dinner, ann, "there")
    edit(mediator, lunch, 1, "hello", ann, key="edit-1")
    snapshot = Snapshot(database, published)

    with pytest.raises(IdempotencyKeyReused) as refused:
        if other == "seq":
            edit(mediator, lunch, 2, "hello", ann, key="edit-1")
        elif other == "text":
            edit(mediator, lunch, 1, "goodbye", ann, key="edit-1")
        else:
            edit(mediator, dinner, 1, "hello", ann, key="edit-1")

    assert refused.value.code == "idempotency_key_reused"
    assert snapshot.unchanged()


def test_another_user_may_use_the_same_key_for_their_own_edit(mediator, database, ann, bob, lunch):
    post(mediator, lunch, bob, "bob's")  # joined 2, posted 3
    edit(mediator, lunch, 1, "hello", ann, key="edit-1")  # 4

    theirs = edit(mediator, lunch, 2, "bob's, edited", bob, key="edit-1")  # 5

    assert theirs.changed is True and theirs.message.version == 5
    assert versions(database, lunch) == [1, 2, 3, 4, 5]


def test_a_refused_edit_does_not_spend_its_key(mediator, database, ann, bob, lunch):
    post(mediator, lunch, bob, "bob's")
    with pytest.raises(NotAllowed):
        edit(mediator, lunch, 2, "not mine", ann, key="edit-1")

    change = edit(mediator, lunch, 1, "mine", ann, key="edit-1")

    assert change.changed is True and change.message.shown_text == "mine"


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_a_repeated_post_after_its_message_changed_answers_the_message_as_it_is_now(
    mediator, database, published, ann, lunch, change
):
    posted = post(mediator, lunch, ann, "keyed", key="post-1").message
    if change == "edited":
        edit(mediator, lunch, posted.seq, "keyed, edited", ann)
    else:
        delete(mediator, lunch, posted.seq, ann)
    snapshot = Snapshot(database, published)

    again = post(mediator, lunch, ann, "keyed", key="post-1")

    assert again.created is False
    assert again.message == stored(database, lunch, posted.seq)
    assert snapshot.unchanged()


def test_a_repeated_posts_key_in_another_chat_is_reused_even_after_its_message_changed(
    mediator, database, published, ann, lunch
):
    posted = post(mediator, lunch, ann, "keyed", key="post-1").message
    edit(mediator, lunch, posted.seq, "keyed, edited", ann)
    dinner = create(mediator, ann, title="Dinner")
    snapshot = Snapshot(database, published)

    with pytest.raises(IdempotencyKeyReused):
        post(mediator, dinner, ann, "keyed", key="post-1")

    assert snapshot.unchanged()


def test_a_keyed_edit_of_a_message_one_may_no_longer_see_is_chat_not_found(mediator, database, published, ann, bob):
    chat = create(mediator, ann, "private")
    add(mediator, chat, "bob", ann)
    post(mediator, chat, bob, "bob's")
    edit(mediator, chat, 1, "edited", bob, key="edit-1")
    remove(mediator, chat, "bob", ann)
    snapshot = Snapshot(database, published)

    with pytest.raises(ChatNotFound):
        edit(mediator, chat, 1, "edited", bob, key="edit-1")  # the replay reveals nothing either

    assert snapshot.unchanged()


# --- the chat version ----------------------------------------------------------------------------------------


def test_a_new_chat_is_at_version_0_and_chat_created_says_so(mediator, database, published, ann):
    chat = create(mediator, ann)

    assert chat.version == 0 and version_of(database, chat) == 0
    (created,) = new_events(database, published, 0)
    assert isinstance(created, NewChatCreatedEvent)
    assert created.version == 0 and created.chat.version == 0


def test_every_kind_of_change_raises_the_version_by_exactly_one_and_its_event_carries_it(
    mediator, database, published, ann, bob, carol
):
    chat = create(mediator, ann)
    steps = [
        ("post", lambda: post(mediator, chat, ann, "one"), [NewMessageReceivedEvent]),
        ("edit", lambda: edit(mediator, chat, 1, "one!", ann), [MessageEditedEvent]),
        ("delete", lambda: delete(mediator, chat, 1, ann), [MessageDeletedEvent]),
        ("join", lambda: add(mediator, chat, "bob", bob), [MemberJoinedEvent]),
        ("add", lambda: add(mediator, chat, "carol", ann), [MemberJoinedEvent]),
        ("leave", lambda: remove(mediator, chat, "bob", bob), [MemberLeftEvent]),
        ("remove", lambda: remove(mediator, chat, "carol", ann), [MemberLeftEvent]),
        # posting in a public chat one is not in: two changes, the join first
        ("join-by-posting", lambda: post(mediator, chat, bob, "hello"), [MemberJoinedEvent, NewMessageReceivedEvent]),
    ]
    for name, step, expected in steps:
        before = version_of(database, chat)
        since = len(database.outbox)

        step()

        events = [e for e in new_events(database, published, since) if not isinstance(e, ChatReadEvent)]
        assert [type(e) for e in events] == expected, name
        assert [e.version for e in events] == list(range(before + 1, before + 1 + len(expected))), name
        assert version_of(database, chat) == before + len(expected), name
    assert versions(database, chat) == list(range(1, 10))


def test_membership_events_carry_the_version_on_the_member_and_the_chat_too(mediator, database, ann, bob):
    chat = create(mediator, ann)
    post(mediator, chat, ann)
    add(mediator, chat, "bob", ann)
    remove(mediator, chat, "bob", ann)

    joined, left = [e for e in database.outbox if isinstance(e, (MemberJoinedEvent, MemberLeftEvent))]
    assert (joined.version, joined.chat.version, joined.member.version) == (2, 2, 2)
    assert (left.version, left.chat.version, left.member.version) == (3, 3, 3)


def test_chat_deleted_carries_the_chats_last_version(mediator, database, ann, lunch):
    edit(mediator, lunch, 1, "edited", ann)

    mediator.handle_command(DeleteChatCommand(chat_id=lunch.id, requested_by=ann))

    deleted = database.outbox[-1]
    assert isinstance(deleted, ChatDeletedEvent)
    assert deleted.version == 2 == deleted.chat.version


def test_versions_of_one_chat_are_consecutive_over_a_long_mixed_sequence(
    mediator, database, published, ann, bob, carol, moderator, writer
):
    chat = create(mediator, ann)
    other = create(mediator, bob, title="Elsewhere")  # its changes interleave, with versions of its own
    script = [
        lambda: post(mediator, chat, ann, "a1"),
        lambda: post(mediator, other, bob, "elsewhere 1"),
        lambda: post(mediator, chat, bob, "b1"),  # bob joins by posting: two versions
        lambda: edit(mediator, chat, 1, "a1 edited", ann),
        lambda: add(mediator, chat, "carol", ann),
        lambda: mark_read(mediator, chat, carol, 2),  # no change of content
        lambda: post(mediator, chat, carol, "c1"),
        lambda: edit(mediator, chat, 2, "b1 edited", bob),
        lambda: edit(mediator, chat, 2, "b1 edited", bob),  # no-op
        lambda: post(mediator, other, writer, "elsewhere 2"),  # writer joins the other chat
        lambda: delete(mediator, chat, 3, ann),  # the owner deletes carol's
        lambda: delete(mediator, chat, 3, ann),  # again: nothing
        lambda: post(mediator, chat, ann, "a2", key="post-1"),
        lambda: post(mediator, chat, ann, "a2", key="post-1"),  # a replay
        lambda: edit(mediator, chat, 4, "a2 edited", ann, key="edit-1"),
        lambda: edit(mediator, chat, 4, "a2 edited", ann, key="edit-1"),  # a replay
        lambda: remove(mediator, chat, "carol", carol),
        lambda: add(mediator, chat, "writer", moderator),
        lambda: post(mediator, chat, writer, "w1"),
        lambda: delete(mediator, chat, 5, moderator),
        lambda: remove(mediator, chat, "writer", ann),
        lambda: post(mediator, chat, carol, "c2"),  # carol rejoins by posting
        lambda: edit(mediator, chat, 6, "c2 edited", carol),
        lambda: delete(mediator, chat, 2, bob),
        lambda: edit(mediator, chat, 1, "a1 edited twice", ann),
        lambda: add(mediator, chat, "bob", bob),  # already a member: nothing
        lambda: delete(mediator, chat, 1, moderator),
    ]
    refusals = [
        lambda: edit(mediator, chat, 1, "not yours", bob),
        lambda: delete(mediator, chat, 4, carol),
        lambda: edit(mediator, chat, 3, "deleted", carol),
        lambda: edit(mediator, chat, 99, "nothing", ann),
        lambda: edit(mediator, chat, 4, "", ann),
        lambda: remove(mediator, chat, "ann", ann),
        lambda: remove(mediator, chat, "carol", bob),
        lambda: delete(mediator, chat, 1, Participant(id=99, username="stranger")),
    ]
    for n, step in enumerate(script):
        step()
        with pytest.raises(DomainError):
            refusals[n % len(refusals)]()

    numbers = versions(database, chat)
    assert len(numbers) >= 20
    assert numbers == list(range(1, len(numbers) + 1))
    assert version_of(database, chat) == len(numbers)
    assert versions(database, other) == [1, 2, 3]  # bob's post; writer joins, posts
    # each message's version is that of its latest change, and what its latest event carried
    for message in (m for m in database.messages.values() if m.chat_id == chat.id):
        latest = [e for e in database.outbox if getattr(e, "message", None) is not None and e.message.id == message.id]
        assert latest[-1].message == message
        assert message.version == latest[-1].version
    assert new_events(database, published, 0)  # published and stored alike


@pytest.mark.parametrize(
    "nothing",
    [
        "read-position",
        "no-op-edit",
        "repeated-delete",
        "edit-replay",
        "post-replay",
        "joining-again",
        "adding-a-member-again",
    ],
)
def test_what_changes_no_content_raises_no_version(mediator, database, published, ann, bob, lunch, nothing):
    post(mediator, lunch, bob, "bob's")  # bob joins (2) and posts (3)
    edit(mediator, lunch, 1, "hello", ann, key="edit-1")  # 4
    post(mediator, lunch, ann, "keyed", key="post-1")  # 5
    delete(mediator, lunch, 2, bob)  # 6
    since = len(database.outbox)

    {
        "read-position": lambda: mark_read(mediator, lunch, bob, 3),
        "no-op-edit": lambda: edit(mediator, lunch, 1, "hello", ann),
        "repeated-delete": lambda: delete(mediator, lunch, 2, ann),
        "edit-replay": lambda: edit(mediator, lunch, 1, "hello", ann, key="edit-1"),
        "post-replay": lambda: post(mediator, lunch, ann, "keyed", key="post-1"),
        "joining-again": lambda: add(mediator, lunch, "bob", bob),
        "adding-a-member-again": lambda: add(mediator, lunch, "bob", ann),
    }[nothing]()

    assert version_of(database, lunch) == 6
    assert all(e.version is None for e in new_events(database, published, since))  # a chat.read at most


def test_a_read_position_event_has_no_version(mediator, database, ann, bob, lunch):
    add(mediator, lunch, "bob", ann)
    post(mediator, lunch, ann, "two")
    since = len(database.outbox)

    mark_read(mediator, lunch, bob, 3)

    (read,) = database.outbox[since:]
    assert isinstance(read, ChatReadEvent) and read.version is None
    assert version_of(database, lunch) == 3


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(lambda m, chat, ann, bob: edit(m, chat, 1, "x", bob), id="not-the-author"),
        pytest.param(lambda m, chat, ann, bob: delete(m, chat, 1, bob), id="not-allowed-to-delete"),
        pytest.param(lambda m, chat, ann, bob: edit(m, chat, 1, " ", ann), id="invalid-text"),
        pytest.param(lambda m, chat, ann, bob: edit(m, chat, 7, "x", ann), id="unknown-seq"),
        pytest.param(lambda m, chat, ann, bob: remove(m, chat, "ann", ann), id="owner-leaves"),
        pytest.param(lambda m, chat, ann, bob: remove(m, chat, "carol", ann), id="not-a-member"),
        pytest.param(lambda m, chat, ann, bob: post(m, chat, ann, ""), id="empty-post"),
        pytest.param(lambda m, chat, ann, bob: post(m, chat, ann, "other", key="post-1"), id="post-key-reused"),
    ],
)
def test_a_refused_command_raises_no_version(mediator, database, published, ann, bob, lunch, refused):
    post(mediator, lunch, ann, "keyed", key="post-1")
    snapshot = Snapshot(database, published)

    with pytest.raises((NotAllowed, InvalidText, MessageNotFound, OwnerCannotLeave, MemberNotFound,
                        IdempotencyKeyReused)):
        refused(mediator, lunch, ann, bob)

    assert snapshot.unchanged()
    assert version_of(database, lunch) == 2


def test_each_chat_counts_its_own_versions(mediator, database, ann, bob):
    lunch = create(mediator, ann)
    dinner = create(mediator, bob, title="Dinner")
    for n in range(3):
        post(mediator, lunch, ann, f"lunch {n}")
        post(mediator, dinner, bob, f"dinner {n}")
    edit(mediator, dinner, 1, "dinner edited", bob)

    assert versions(database, lunch) == [1, 2, 3]
    assert versions(database, dinner) == [1, 2, 3, 4]
    assert (version_of(database, lunch), version_of(database, dinner)) == (3, 4)
