"""Membership rules of the chat aggregate, through the mediator on the in-memory fakes.

Every test that changes something checks the events both where they are stored (`database.outbox`) and where
the mediator handed them on after the commit (`published`).
"""

import pytest

from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
    MarkReadCommand,
    RemoveMemberCommand,
)
from messaging_domain.events import (
    ChatDeletedEvent,
    ChatReadEvent,
    MemberJoinedEvent,
    MemberLeftEvent,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
)
from messaging_domain.exceptions import (
    ChatNotFound,
    InvalidSeq,
    InvalidVisibility,
    MemberNotFound,
    NotAllowed,
    NotAMember,
    OwnerCannotLeave,
    UserNotFound,
)
from messaging_domain.values import Role, Visibility

pytestmark = pytest.mark.usefixtures("registered")


# --- helpers -------------------------------------------------------------------------------------------------


def create(mediator, owner, visibility="public", title="Lunch"):
    return mediator.handle_command(CreateChatCommand(title=title, owner=owner, visibility=visibility))


def post(mediator, chat, author, text="hi", key=None):
    return mediator.handle_command(CreateMessageCommand(chat_id=chat.id, text=text, author=author, idempotency_key=key))


def add(mediator, chat, username, requested_by, as_moderator=False):
    return mediator.handle_command(
        AddMemberCommand(chat_id=chat.id, username=username, requested_by=requested_by, as_moderator=as_moderator)
    )


def remove(mediator, chat, username, requested_by, as_moderator=False):
    return mediator.handle_command(
        RemoveMemberCommand(chat_id=chat.id, username=username, requested_by=requested_by, as_moderator=as_moderator)
    )


def mark_read(mediator, chat, reader, seq):
    return mediator.handle_command(MarkReadCommand(chat_id=chat.id, seq=seq, reader=reader))


def delete(mediator, chat, requested_by, as_moderator=False):
    return mediator.handle_command(DeleteChatCommand(chat_id=chat.id, requested_by=requested_by, as_moderator=as_moderator))


def member(database, chat, user):
    return database.memberships.get((chat.id, user.id))


def stored_chat(database, chat):
    return database.chats[chat.id]


def new_events(database, published, since):
    """The events recorded after the first `since` ones, checked to be the same in the outbox and published."""
    assert published == database.outbox
    return database.outbox[since:]


class Snapshot:
    """Everything a command could change, to show that a refused one changed nothing."""

    def __init__(self, database, published):
        self.database = database
        self.published = published
        self.state = self.take()

    def take(self):
        return (
            {chat_id: (chat.last_seq, chat.member_count) for chat_id, chat in self.database.chats.items()},
            {key: (m.role, m.last_read_seq) for key, m in self.database.memberships.items()},
            set(self.database.messages),
            list(self.database.outbox),
            list(self.published),
        )

    def unchanged(self):
        return self.take() == self.state


# --- creating a chat -----------------------------------------------------------------------------------------


def test_a_chat_is_public_unless_asked_otherwise(mediator, database, ann):
    chat = mediator.handle_command(CreateChatCommand(title="Lunch", owner=ann))
    assert stored_chat(database, chat).visibility is Visibility.PUBLIC


def test_a_chat_may_be_created_private(mediator, database, published, ann):
    chat = create(mediator, ann, "private")

    assert stored_chat(database, chat).visibility is Visibility.PRIVATE
    [created] = new_events(database, published, 0)
    assert isinstance(created, NewChatCreatedEvent)
    assert created.chat.visibility is Visibility.PRIVATE


@pytest.mark.parametrize("visibility", ["secret", "PRIVATE", "Public", "", " public", None, 1, True, ["public"]])
def test_an_invalid_visibility_is_refused_and_nothing_is_stored(mediator, database, published, ann, visibility):
    with pytest.raises(InvalidVisibility):
        create(mediator, ann, visibility)

    assert database.chats == {} and database.memberships == {}
    assert database.outbox == [] and published == []


def test_the_creator_is_the_owner_and_only_member(mediator, database, published, ann):
    chat = create(mediator, ann)

    assert chat.member_count == 1 and stored_chat(database, chat).member_count == 1
    [(key, owner)] = database.memberships.items()
    assert key == (chat.id, ann.id)
    assert owner.user == ann and owner.role is Role.OWNER and owner.is_owner
    assert owner.last_read_seq == 0
    assert [type(e) for e in new_events(database, published, 0)] == [NewChatCreatedEvent]
    assert database.outbox[0].chat.member_count == 1


# --- joining and adding --------------------------------------------------------------------------------------


def test_anyone_joins_a_public_chat_themselves_having_read_what_was_there(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    post(mediator, chat, ann)
    post(mediator, chat, ann)
    before = len(database.outbox)

    change = add(mediator, chat, "bob", bob)

    assert change.changed
    assert change.membership.user == bob and change.membership.role is Role.MEMBER
    assert change.membership.last_read_seq == 2
    assert member(database, chat, bob).last_read_seq == 2
    assert stored_chat(database, chat).member_count == 2
    [joined] = new_events(database, published, before)
    assert isinstance(joined, MemberJoinedEvent)
    assert joined.chat_id == chat.id
    assert joined.member.user == bob and joined.member.role is Role.MEMBER and joined.member.last_read_seq == 2
    assert joined.chat.member_count == 2 and joined.chat.last_seq == 2


def test_adding_an_existing_member_changes_nothing_and_records_no_event(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    unchanged = Snapshot(database, published)

    again_by_himself = add(mediator, chat, "bob", bob)
    again_by_the_owner = add(mediator, chat, "bob", ann)
    the_owner_herself = add(mediator, chat, "ann", ann)

    assert not again_by_himself.changed and not again_by_the_owner.changed and not the_owner_herself.changed
    assert again_by_himself.membership.user == bob and again_by_the_owner.membership.user == bob
    assert the_owner_herself.membership.role is Role.OWNER
    assert unchanged.unchanged()
    assert stored_chat(database, chat).member_count == 2


def test_the_owner_adds_someone_else_to_a_public_chat(mediator, database, published, ann, bob):
    chat = create(mediator, ann)

    change = add(mediator, chat, "bob", ann)

    assert change.changed and member(database, chat, bob).role is Role.MEMBER
    [joined] = new_events(database, published, 1)
    assert isinstance(joined, MemberJoinedEvent) and joined.member.user == bob


def test_staff_add_someone_else_to_a_public_chat(mediator, database, ann, bob, moderator):
    chat = create(mediator, ann)
    assert add(mediator, chat, "bob", moderator).changed
    assert member(database, chat, bob) is not None
    assert member(database, chat, moderator) is None


def test_a_member_who_is_not_the_owner_may_not_add_others_to_a_public_chat(mediator, database, published, ann, bob, carol):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        add(mediator, chat, "carol", bob)

    assert unchanged.unchanged()
    assert member(database, chat, carol) is None


def test_a_non_member_may_not_add_others_to_a_public_chat(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        add(mediator, chat, "carol", bob)

    assert unchanged.unchanged()


def test_usernames_are_found_in_any_case(mediator, database, ann, bob):
    chat = create(mediator, ann)
    change = add(mediator, chat, "BoB", ann)
    assert change.changed and change.membership.user == bob


def test_adding_an_unknown_username_is_refused_as_user_not_found(mediator, database, published, ann):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(UserNotFound):
        add(mediator, chat, "nobody", ann)

    assert unchanged.unchanged()


# Who may neither add nor remove someone else (bob: not the owner, not staff), by the chat's visibility and
# whether he is a member of it.
MAY_NOT_MANAGE = {
    "a member of a public chat": ("public", True),
    "a non-member of a public chat": ("public", False),
    "a member of a private chat": ("private", True),
}


@pytest.mark.parametrize("visibility, bob_is_a_member", MAY_NOT_MANAGE.values(), ids=MAY_NOT_MANAGE.keys())
def test_someone_who_may_not_add_others_is_refused_before_the_username_is_looked_up(
    mediator, database, published, ann, bob, visibility, bob_is_a_member
):
    """Permission (403) before the user exists (400): an unknown username answers like a known one, so that
    a caller who may not add anyone learns nothing about which usernames exist."""
    chat = create(mediator, ann, visibility)
    if bob_is_a_member:
        add(mediator, chat, "bob", ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        add(mediator, chat, "carol", bob)
    with pytest.raises(NotAllowed):
        add(mediator, chat, "nobody", bob)

    assert unchanged.unchanged()


# Those who may add or remove others in a chat of ann's (with bob in it), and are told that a username is unknown.
MAY_MANAGE = {
    "the owner of a public chat": ("public", "ann", False),
    "the owner of a private chat": ("private", "ann", False),
    "staff, in a public chat they are not in": ("public", "mod", False),
    "staff who are members of a private chat": ("private", "mod", False),
    "staff acting as moderator in a private chat they are not in": ("private", "mod", True),
}


@pytest.mark.parametrize("visibility, manager, as_moderator", MAY_MANAGE.values(), ids=MAY_MANAGE.keys())
def test_who_may_add_others_is_told_an_unknown_username_is_no_user(
    mediator, database, published, ann, bob, visibility, manager, as_moderator
):
    chat = create(mediator, ann, visibility)
    add(mediator, chat, "bob", ann)
    if visibility == "private" and manager == "mod" and not as_moderator:
        add(mediator, chat, "mod", ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(UserNotFound):
        add(mediator, chat, "nobody", database.users[manager], as_moderator=as_moderator)

    assert unchanged.unchanged()


@pytest.mark.parametrize("visibility, manager, as_moderator", MAY_MANAGE.values(), ids=MAY_MANAGE.keys())
def test_who_may_remove_others_is_told_an_unknown_username_is_no_member(
    mediator, database, published, ann, bob, visibility, manager, as_moderator
):
    chat = create(mediator, ann, visibility)
    add(mediator, chat, "bob", ann)
    if visibility == "private" and manager == "mod" and not as_moderator:
        add(mediator, chat, "mod", ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(MemberNotFound):
        remove(mediator, chat, "nobody", database.users[manager], as_moderator=as_moderator)

    assert unchanged.unchanged()


def test_naming_oneself_in_another_case_joins_a_public_chat(mediator, database, published, ann, bob):
    """Usernames are found in any case, so "BOB" is bob himself: joining, not adding someone else."""
    chat = create(mediator, ann)

    change = add(mediator, chat, "BOB", bob)

    assert change.changed and change.membership.user == bob
    assert member(database, chat, bob).role is Role.MEMBER


def test_a_member_naming_himself_in_another_case_is_already_in_the_chat(mediator, database, published, ann, bob):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    again = add(mediator, chat, "Bob", bob)

    assert not again.changed and again.membership.user == bob
    assert unchanged.unchanged()


# --- posting makes the author a member -----------------------------------------------------------------------


def test_posting_in_a_public_chat_makes_the_author_a_member_before_the_message(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    post(mediator, chat, ann)
    post(mediator, chat, ann)
    before = len(database.outbox)

    posted = post(mediator, chat, bob, "hello")

    joined, created = new_events(database, published, before)
    assert isinstance(joined, MemberJoinedEvent) and isinstance(created, NewMessageReceivedEvent)
    assert joined.member.user == bob and joined.member.role is Role.MEMBER
    # The chat as he joined it, before his message; he has read up to his own message, which comes next.
    assert joined.chat.member_count == 2 and joined.chat.last_seq == 2
    assert created.message == posted.message and posted.message.seq == 3
    # the event is a snapshot of the moment of joining (chat and member alike); the stored position then
    # moves with the post, so the newcomer has read up to their own message
    assert joined.member.last_read_seq == joined.chat.last_seq == 2
    assert member(database, chat, bob).last_read_seq == 3
    assert stored_chat(database, chat).member_count == 2


def test_a_second_post_makes_no_second_join(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    post(mediator, chat, bob, "one")
    before = len(database.outbox)

    post(mediator, chat, bob, "two")

    assert [type(e) for e in new_events(database, published, before)] == [NewMessageReceivedEvent]
    assert stored_chat(database, chat).member_count == 2


def test_the_owner_posting_makes_no_join(mediator, database, published, ann):
    chat = create(mediator, ann)
    post(mediator, chat, ann)
    assert [type(e) for e in new_events(database, published, 1)] == [NewMessageReceivedEvent]
    assert stored_chat(database, chat).member_count == 1


def test_an_idempotent_replay_makes_no_membership_and_no_event(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    first = post(mediator, chat, bob, "hello", key="k-1")
    remove(mediator, chat, "bob", bob)  # he left; a replay of his earlier post must not bring him back
    unchanged = Snapshot(database, published)

    again = post(mediator, chat, bob, "hello", key="k-1")

    assert first.created and not again.created and again.message == first.message
    assert member(database, chat, bob) is None
    assert unchanged.unchanged()


def test_an_idempotent_replay_by_a_member_records_nothing(mediator, database, published, ann, bob, writer):
    chat = create(mediator, ann)
    post(mediator, chat, bob, "hello", key="k-1")
    post(mediator, chat, writer, "after bob")
    unchanged = Snapshot(database, published)

    again = post(mediator, chat, bob, "hello", key="k-1")

    assert not again.created
    assert unchanged.unchanged()
    assert member(database, chat, bob).last_read_seq == 1  # a replay reads nothing further


# --- posting reads the chat up to one's own message ----------------------------------------------------------


def unread(database, chat, user):
    return stored_chat(database, chat).unread(member(database, chat, user))


def test_the_owner_posting_reads_her_chat_up_to_her_message_and_her_devices_hear_of_what_she_passed(
    mediator, database, published, ann, writer
):
    chat = chat_with_messages(mediator, ann, writer, 2)
    assert member(database, chat, ann).last_read_seq == 0 and unread(database, chat, ann) == 2
    before = len(database.outbox)

    posted = post(mediator, chat, ann, "mine")

    assert posted.message.seq == 3
    assert member(database, chat, ann).last_read_seq == 3 and unread(database, chat, ann) == 0
    created, read = new_events(database, published, before)
    assert isinstance(created, NewMessageReceivedEvent) and isinstance(read, ChatReadEvent)
    assert (read.member.user, read.member.last_read_seq, read.unread) == (ann, 3, 0)
    # Her message is unread to the others, as theirs were to her.
    assert member(database, chat, writer).last_read_seq == 2 and unread(database, chat, writer) == 1

    unchanged = Snapshot(database, published)
    assert mark_read(mediator, chat, ann, 3).unread == 0  # nothing left to read: nothing moves
    assert unchanged.unchanged()


def test_a_newcomer_who_joins_by_posting_has_read_up_to_their_message(mediator, database, published, ann, bob, writer):
    chat = chat_with_messages(mediator, ann, writer, 2)
    before = len(database.outbox)

    posted = post(mediator, chat, bob, "hello")

    assert posted.created and posted.message.seq == 3
    joined, created = new_events(database, published, before)  # no chat.read
    assert isinstance(joined, MemberJoinedEvent) and isinstance(created, NewMessageReceivedEvent)
    assert joined.member.user == bob and joined.member.last_read_seq == joined.chat.last_seq == 2  # at joining
    assert member(database, chat, bob).last_read_seq == 3 and unread(database, chat, bob) == 0

    unchanged = Snapshot(database, published)
    assert mark_read(mediator, chat, bob, 3).unread == 0
    assert unchanged.unchanged()


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_a_member_posting_reads_past_what_others_wrote_before_and_no_further(
    mediator, database, published, ann, bob, writer, visibility
):
    chat = chat_with_messages(mediator, ann, writer, 0, visibility)
    add(mediator, chat, "bob", ann)
    post(mediator, chat, writer, "one")
    post(mediator, chat, writer, "two")
    assert member(database, chat, bob).last_read_seq == 0 and unread(database, chat, bob) == 2
    before = len(database.outbox)

    post(mediator, chat, bob, "three")

    assert [type(e) for e in new_events(database, published, before)] == [NewMessageReceivedEvent, ChatReadEvent]
    assert member(database, chat, bob).last_read_seq == 3 and unread(database, chat, bob) == 0
    assert member(database, chat, ann).last_read_seq == 0  # one member's post moves no one else's position

    post(mediator, chat, writer, "four")
    assert member(database, chat, bob).last_read_seq == 3 and unread(database, chat, bob) == 1

    before = len(database.outbox)
    post(mediator, chat, bob, "five")  # passes "four"
    post(mediator, chat, bob, "six")  # passes nothing: no count any device shows changes, so no chat.read
    assert [type(e) for e in new_events(database, published, before)] == [
        NewMessageReceivedEvent, ChatReadEvent, NewMessageReceivedEvent]


# --- private chats -------------------------------------------------------------------------------------------


def private_chat_with_bob(mediator, ann):
    chat = create(mediator, ann, "private")
    add(mediator, chat, "bob", ann)
    return chat


COMMANDS_OF_A_NON_MEMBER = {
    "post": lambda m, chat, user: post(m, chat, user),
    "add themselves": lambda m, chat, user: add(m, chat, user.username, user),
    "add someone": lambda m, chat, user: add(m, chat, "carol", user),
    "remove a member": lambda m, chat, user: remove(m, chat, "bob", user),
    "remove the owner": lambda m, chat, user: remove(m, chat, "ann", user),
    "remove themselves": lambda m, chat, user: remove(m, chat, user.username, user),
    "remove an unknown user": lambda m, chat, user: remove(m, chat, "nobody", user),
    "add an unknown user": lambda m, chat, user: add(m, chat, "nobody", user),
    "mark read": lambda m, chat, user: mark_read(m, chat, user, 1),
    "mark read with a bad seq": lambda m, chat, user: mark_read(m, chat, user, 0),
    "delete": lambda m, chat, user: delete(m, chat, user),
}


@pytest.mark.parametrize("command", COMMANDS_OF_A_NON_MEMBER.values(), ids=COMMANDS_OF_A_NON_MEMBER.keys())
@pytest.mark.parametrize("who", ["carol", "moderator"])
def test_a_private_chat_does_not_exist_for_a_non_member_not_even_staff(
    mediator, database, published, ann, request, command, who
):
    user = request.getfixturevalue(who)
    chat = private_chat_with_bob(mediator, ann)
    post(mediator, chat, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(ChatNotFound):
        command(mediator, chat, user)

    assert unchanged.unchanged()


@pytest.mark.parametrize(
    "command",
    [
        lambda m, chat, user: add(m, chat, "carol", user, as_moderator=True),
        lambda m, chat, user: remove(m, chat, "bob", user, as_moderator=True),
        lambda m, chat, user: delete(m, chat, user, as_moderator=True),
    ],
    ids=["add", "remove", "delete"],
)
def test_as_moderator_is_no_way_into_a_private_chat_for_someone_who_is_not_staff(
    mediator, database, published, ann, carol, command
):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(ChatNotFound):
        command(mediator, chat, carol)

    assert unchanged.unchanged()


def test_staff_acting_as_moderator_add_to_a_private_chat_they_are_not_in(mediator, database, published, ann, carol, moderator):
    chat = private_chat_with_bob(mediator, ann)
    before = len(database.outbox)

    change = add(mediator, chat, "carol", moderator, as_moderator=True)

    assert change.changed and member(database, chat, carol).role is Role.MEMBER
    assert member(database, chat, moderator) is None
    assert stored_chat(database, chat).member_count == 3
    [joined] = new_events(database, published, before)
    assert isinstance(joined, MemberJoinedEvent) and joined.member.user == carol


def test_staff_acting_as_moderator_remove_from_a_private_chat_they_are_not_in(mediator, database, published, ann, bob, moderator):
    chat = private_chat_with_bob(mediator, ann)
    before = len(database.outbox)

    remove(mediator, chat, "bob", moderator, as_moderator=True)

    assert member(database, chat, bob) is None
    assert stored_chat(database, chat).member_count == 1
    [left] = new_events(database, published, before)
    assert isinstance(left, MemberLeftEvent) and left.member.user == bob


def test_staff_acting_as_moderator_cannot_remove_the_owner_of_a_private_chat(mediator, database, published, ann, moderator):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(OwnerCannotLeave):
        remove(mediator, chat, "ann", moderator, as_moderator=True)

    assert unchanged.unchanged()


def test_staff_acting_as_moderator_delete_a_private_chat_they_are_not_in(mediator, database, published, ann, bob, moderator):
    chat = private_chat_with_bob(mediator, ann)
    before = len(database.outbox)

    delete(mediator, chat, moderator, as_moderator=True)

    assert database.chats == {} and database.memberships == {}
    [deleted] = new_events(database, published, before)
    assert isinstance(deleted, ChatDeletedEvent)
    assert deleted.deleted_by == "mod"
    assert sorted(deleted.member_ids) == [ann.id, bob.id]


def test_staff_who_are_members_of_a_private_chat_add_others_without_acting_as_moderator(mediator, database, ann, carol, moderator):
    chat = create(mediator, ann, "private")
    add(mediator, chat, "mod", ann)

    assert add(mediator, chat, "carol", moderator).changed
    assert member(database, chat, carol) is not None


def test_the_owner_adds_and_removes_members_of_a_private_chat(mediator, database, published, ann, bob):
    chat = create(mediator, ann, "private")

    added = add(mediator, chat, "bob", ann)
    assert added.changed and added.membership.user == bob
    assert stored_chat(database, chat).member_count == 2
    post(mediator, chat, bob)  # a member may post now

    removed = remove(mediator, chat, "bob", ann)
    assert removed.changed and removed.membership.user == bob
    assert member(database, chat, bob) is None
    assert stored_chat(database, chat).member_count == 1

    assert [type(e) for e in new_events(database, published, 0)] == [
        NewChatCreatedEvent,
        MemberJoinedEvent,
        NewMessageReceivedEvent,
        MemberLeftEvent,
    ]
    with pytest.raises(ChatNotFound):
        post(mediator, chat, bob)


def test_a_private_chat_is_not_joined_by_posting_in_it(mediator, database, ann, bob):
    chat = create(mediator, ann, "private")
    with pytest.raises(ChatNotFound):
        post(mediator, chat, bob)
    assert member(database, chat, bob) is None and database.messages == {}


def test_a_member_who_is_not_the_owner_may_not_add_others_to_a_private_chat(mediator, database, published, ann, bob, carol):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        add(mediator, chat, "carol", bob)

    assert unchanged.unchanged()
    assert member(database, chat, carol) is None


def test_a_member_of_a_private_chat_adding_themselves_again_changes_nothing(mediator, database, published, ann, bob):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    again = add(mediator, chat, "bob", bob)

    assert not again.changed
    assert unchanged.unchanged()


def test_a_member_who_is_not_the_owner_may_not_remove_others_from_a_private_chat(mediator, database, published, ann, bob, carol):
    chat = private_chat_with_bob(mediator, ann)
    add(mediator, chat, "carol", ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        remove(mediator, chat, "carol", bob)

    assert unchanged.unchanged()


# --- leaving and removing ------------------------------------------------------------------------------------


def test_a_member_leaves_a_chat(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    before = len(database.outbox)

    change = remove(mediator, chat, "bob", bob)

    assert change.changed and change.membership.user == bob
    assert member(database, chat, bob) is None
    assert stored_chat(database, chat).member_count == 1
    [left] = new_events(database, published, before)
    assert isinstance(left, MemberLeftEvent)
    assert left.chat_id == chat.id and left.member.user == bob and left.member.role is Role.MEMBER
    assert left.chat.member_count == 1


def test_a_member_leaves_a_private_chat_and_it_is_gone_for_them(mediator, database, published, ann, bob):
    chat = private_chat_with_bob(mediator, ann)

    remove(mediator, chat, "bob", bob)

    assert isinstance(database.outbox[-1], MemberLeftEvent)
    with pytest.raises(ChatNotFound):
        mark_read(mediator, chat, bob, 1)


def test_the_owner_removes_a_member_of_a_public_chat(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)

    remove(mediator, chat, "bob", ann)

    assert member(database, chat, bob) is None
    assert isinstance(new_events(database, published, 0)[-1], MemberLeftEvent)


def test_staff_remove_a_member_of_a_public_chat_they_are_not_in(mediator, database, ann, bob, moderator):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    remove(mediator, chat, "bob", moderator)
    assert member(database, chat, bob) is None


def test_a_member_may_not_remove_another_member(mediator, database, published, ann, bob, carol):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    add(mediator, chat, "carol", carol)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        remove(mediator, chat, "carol", bob)

    assert unchanged.unchanged()


def test_removing_a_non_member_is_refused_as_member_not_found(mediator, database, published, ann):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(MemberNotFound):
        remove(mediator, chat, "bob", ann)

    assert unchanged.unchanged()


def test_leaving_a_chat_one_is_not_in_is_refused_as_member_not_found(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(MemberNotFound):
        remove(mediator, chat, "bob", bob)

    assert unchanged.unchanged()


def test_removing_an_unknown_username_is_refused_as_member_not_found(mediator, database, published, ann):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(MemberNotFound):
        remove(mediator, chat, "nobody", ann)

    assert unchanged.unchanged()


@pytest.mark.parametrize("visibility, bob_is_a_member", MAY_NOT_MANAGE.values(), ids=MAY_NOT_MANAGE.keys())
def test_someone_who_may_not_remove_others_is_refused_before_the_username_is_looked_up(
    mediator, database, published, ann, bob, carol, visibility, bob_is_a_member
):
    """The brief's order: visibility -> permission (403) -> member exists (404) -> owner (400). An unknown
    username must not answer differently from a known one, member (carol) or not (the writer)."""
    chat = create(mediator, ann, visibility)
    add(mediator, chat, "carol", ann)
    if bob_is_a_member:
        add(mediator, chat, "bob", ann)
    unchanged = Snapshot(database, published)

    for someone_else in ("carol", "writer", "nobody"):
        with pytest.raises(NotAllowed):
            remove(mediator, chat, someone_else, bob)

    assert unchanged.unchanged()


def test_naming_oneself_in_another_case_leaves_the_chat(mediator, database, published, ann, bob):
    """Usernames are found in any case, so "BOB" is bob himself: leaving, not removing someone else."""
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    before = len(database.outbox)

    change = remove(mediator, chat, "BOB", bob)

    assert change.changed and change.membership.user == bob
    assert member(database, chat, bob) is None
    [left] = new_events(database, published, before)
    assert isinstance(left, MemberLeftEvent) and left.member.user == bob


def test_someone_who_may_not_remove_others_may_not_remove_the_owner_either(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        remove(mediator, chat, "ann", bob)

    assert unchanged.unchanged()


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_the_owner_cannot_leave(mediator, database, published, ann, visibility):
    chat = create(mediator, ann, visibility)
    unchanged = Snapshot(database, published)

    with pytest.raises(OwnerCannotLeave):
        remove(mediator, chat, "ann", ann)

    assert unchanged.unchanged()
    assert member(database, chat, ann).role is Role.OWNER


def test_staff_cannot_remove_the_owner(mediator, database, published, ann, moderator):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(OwnerCannotLeave):
        remove(mediator, chat, "ann", moderator)

    assert unchanged.unchanged()


def test_a_member_who_left_may_join_again_having_read_what_was_there(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    remove(mediator, chat, "bob", bob)
    post(mediator, chat, ann)

    again = add(mediator, chat, "bob", bob)

    assert again.changed and again.membership.last_read_seq == 1
    assert stored_chat(database, chat).member_count == 2


# --- read positions ------------------------------------------------------------------------------------------


def chat_with_messages(mediator, owner, writer, count, visibility="public"):
    """`owner`'s chat with `count` messages by `writer` (who becomes a member by posting, or whom the owner of
    a private chat adds): an author's own messages are never unread to them, so they must be someone else's."""
    chat = create(mediator, owner, visibility)
    if visibility == "private":
        add(mediator, chat, writer.username, owner)
    for n in range(count):
        post(mediator, chat, writer, f"m{n}")
    return chat


def test_marking_read_moves_the_position_and_records_one_chat_read_event(mediator, database, published, ann, writer):
    chat = chat_with_messages(mediator, ann, writer, 5)
    before = len(database.outbox)

    position = mark_read(mediator, chat, ann, 3)

    assert position.membership.last_read_seq == 3 and position.unread == 2
    assert member(database, chat, ann).last_read_seq == 3
    [read] = new_events(database, published, before)
    assert isinstance(read, ChatReadEvent)
    assert read.chat_id == chat.id
    assert read.member.user == ann and read.member.last_read_seq == 3
    assert read.unread == 2


def test_a_read_position_is_clamped_to_the_last_message(mediator, database, published, ann, writer):
    chat = chat_with_messages(mediator, ann, writer, 3)
    before = len(database.outbox)

    position = mark_read(mediator, chat, ann, 1000)

    assert position.membership.last_read_seq == 3 and position.unread == 0
    assert member(database, chat, ann).last_read_seq == 3
    [read] = new_events(database, published, before)
    assert read.member.last_read_seq == 3 and read.unread == 0


def test_a_read_position_never_moves_back(mediator, database, published, ann, writer):
    chat = chat_with_messages(mediator, ann, writer, 5)
    mark_read(mediator, chat, ann, 4)
    unchanged = Snapshot(database, published)

    lower = mark_read(mediator, chat, ann, 2)
    same = mark_read(mediator, chat, ann, 4)

    assert lower.membership.last_read_seq == 4 and lower.unread == 1
    assert same.membership.last_read_seq == 4
    assert member(database, chat, ann).last_read_seq == 4
    assert unchanged.unchanged()


def test_marking_read_in_a_chat_without_messages_records_nothing(mediator, database, published, ann):
    chat = create(mediator, ann)
    unchanged = Snapshot(database, published)

    position = mark_read(mediator, chat, ann, 1)

    assert position.membership.last_read_seq == 0 and position.unread == 0
    assert unchanged.unchanged()


@pytest.mark.parametrize("seq", [0, -1, True, False, "3", 2.5, 3.0, None])
def test_an_invalid_seq_is_refused_and_nothing_is_recorded(mediator, database, published, ann, writer, seq):
    chat = chat_with_messages(mediator, ann, writer, 3)
    unchanged = Snapshot(database, published)

    with pytest.raises(InvalidSeq):
        mark_read(mediator, chat, ann, seq)

    assert unchanged.unchanged()
    assert member(database, chat, ann).last_read_seq == 0


def test_a_non_member_of_a_public_chat_keeps_no_read_position(mediator, database, published, ann, bob, writer):
    chat = chat_with_messages(mediator, ann, writer, 2)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAMember):
        mark_read(mediator, chat, bob, 1)

    assert unchanged.unchanged()
    assert member(database, chat, bob) is None


@pytest.mark.parametrize("seq", [0, "3", None])
def test_a_non_member_of_a_public_chat_sending_a_bad_seq_is_told_the_seq_is_bad(
    mediator, database, published, ann, bob, writer, seq
):
    """mark_read checks visibility, then the seq, then membership."""
    chat = chat_with_messages(mediator, ann, writer, 2)
    unchanged = Snapshot(database, published)

    with pytest.raises(InvalidSeq):
        mark_read(mediator, chat, bob, seq)

    assert unchanged.unchanged()


@pytest.mark.parametrize("seq", [1, 0, "3", None])
def test_a_non_member_of_a_private_chat_is_told_it_does_not_exist_when_marking_read(
    mediator, database, published, ann, bob, writer, seq
):
    """Even with a bad seq: the chat's existence comes first."""
    chat = chat_with_messages(mediator, ann, writer, 2, "private")
    unchanged = Snapshot(database, published)

    with pytest.raises(ChatNotFound):
        mark_read(mediator, chat, bob, seq)

    assert unchanged.unchanged()


def test_a_member_who_joined_late_reads_on_from_where_they_joined(mediator, database, published, ann, bob, writer):
    chat = chat_with_messages(mediator, ann, writer, 2)
    add(mediator, chat, "bob", bob)
    post(mediator, chat, writer, "new")
    post(mediator, chat, writer, "newer")

    unchanged = Snapshot(database, published)
    assert mark_read(mediator, chat, bob, 1).unread == 2  # behind where he joined: nothing moves
    assert unchanged.unchanged()

    position = mark_read(mediator, chat, bob, 3)
    assert position.membership.last_read_seq == 3 and position.unread == 1
    read = database.outbox[-1]
    assert isinstance(read, ChatReadEvent) and read.member.user == bob and read.unread == 1
    assert member(database, chat, ann).last_read_seq == 0  # one member's position is not another's


def test_the_chat_read_event_keeps_the_position_it_was_recorded_with(mediator, database, published, ann, writer):
    chat = chat_with_messages(mediator, ann, writer, 5)
    mark_read(mediator, chat, ann, 2)
    mark_read(mediator, chat, ann, 5)

    reads = [e for e in new_events(database, published, 0) if isinstance(e, ChatReadEvent)]
    assert [(e.member.last_read_seq, e.unread) for e in reads] == [(2, 3), (5, 0)]
    assert [(e.member.last_read_seq, e.unread) for e in published if isinstance(e, ChatReadEvent)] == [(2, 3), (5, 0)]


# --- deleting ------------------------------------------------------------------------------------------------


def test_deleting_a_private_chat_records_every_member(mediator, database, published, ann, bob, carol):
    chat = private_chat_with_bob(mediator, ann)
    add(mediator, chat, "carol", ann)
    before = len(database.outbox)

    delete(mediator, chat, ann)

    assert database.chats == {} and database.memberships == {}
    [deleted] = new_events(database, published, before)
    assert isinstance(deleted, ChatDeletedEvent)
    assert sorted(deleted.member_ids) == [ann.id, bob.id, carol.id]
    assert deleted.chat.visibility is Visibility.PRIVATE and deleted.chat.member_count == 3


def test_deleting_a_public_chat_records_no_members(mediator, database, published, ann, bob):
    chat = create(mediator, ann)
    add(mediator, chat, "bob", bob)
    before = len(database.outbox)

    delete(mediator, chat, ann)

    assert database.chats == {} and database.memberships == {}
    [deleted] = new_events(database, published, before)
    assert isinstance(deleted, ChatDeletedEvent) and deleted.member_ids == ()


def test_a_member_of_a_private_chat_who_is_not_the_owner_may_not_delete_it(mediator, database, published, ann, bob):
    chat = private_chat_with_bob(mediator, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(NotAllowed):
        delete(mediator, chat, bob)

    assert unchanged.unchanged()


def test_staff_who_are_members_of_a_private_chat_delete_it(mediator, database, published, ann, moderator):
    chat = create(mediator, ann, "private")
    add(mediator, chat, "mod", ann)

    delete(mediator, chat, moderator)

    assert database.chats == {}
    assert sorted(database.outbox[-1].member_ids) == [ann.id, moderator.id]


# --- an abandoned command records nothing --------------------------------------------------------------------


REFUSED = {
    "adding as a non-owner": (lambda m, chat, u: add(m, chat, "carol", u["bob"]), NotAllowed),
    "adding an unknown user": (lambda m, chat, u: add(m, chat, "nobody", u["ann"]), UserNotFound),
    "removing a non-member": (lambda m, chat, u: remove(m, chat, "carol", u["ann"]), MemberNotFound),
    "removing the owner": (lambda m, chat, u: remove(m, chat, "ann", u["mod"]), OwnerCannotLeave),
    "removing as a non-owner": (lambda m, chat, u: remove(m, chat, "ann", u["bob"]), NotAllowed),
    "marking read with a bad seq": (lambda m, chat, u: mark_read(m, chat, u["bob"], 0), InvalidSeq),
    "marking read as a non-member": (lambda m, chat, u: mark_read(m, chat, u["carol"], 1), NotAMember),
    "deleting as a non-owner": (lambda m, chat, u: delete(m, chat, u["bob"]), NotAllowed),
}


@pytest.mark.parametrize("command, error", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_command_records_nothing_in_the_outbox(mediator, database, published, ann, bob, writer, command, error):
    chat = chat_with_messages(mediator, ann, writer, 2)
    add(mediator, chat, "bob", bob)
    post(mediator, chat, ann)
    unchanged = Snapshot(database, published)

    with pytest.raises(error):
        command(mediator, chat, database.users)

    assert unchanged.unchanged()
    # ann, the writer (who joined by posting) and bob
    assert stored_chat(database, chat).member_count == 3 and stored_chat(database, chat).last_seq == 3
