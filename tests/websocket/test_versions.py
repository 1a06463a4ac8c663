"""A chat stream by version (issue 12): every change of a chat's content (messages created, edited, deleted;
members joined and left) carries the chat's version; `?after_version=V` replays the current state of what
changed after V, in version order, then live frames follow, each version at most once and in increasing order,
and the client ends with the database's state. `?after_seq=N` keeps its meaning: new messages only, by seq.

Commands go through the mediator (real PostgreSQL); their events are routed as forward_events routes them
(`groups_for`) on the real Redis channel layer, or "lost" (never forwarded) where a test says so.
"""

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.live import consumers
from chats.live.socket_slots import SocketSlots
from chats.pipeline.wire import chat_group
from messaging_domain.commands import (
    AddMemberCommand,
    CreateMessageCommand,
    DeleteChatCommand,
    DeleteMessageCommand,
    EditMessageCommand,
    RemoveMemberCommand,
)
from tests.websocket.test_consumers import assert_closed_with, connect, deliver
from tests.websocket.test_membership import envelopes_since, forward, outbox_mark, run

pytestmark = [
    pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_position_checks"),
]

CHANGES = {"message.created", "message.edited", "message.deleted", "member.joined", "member.left"}


@pytest.fixture
def dan(make_user):
    return make_user("dan")


def post(chat, user, text: str) -> CreateMessageCommand:
    return CreateMessageCommand(chat_id=chat.id, text=text, author=participant_of(user))


def edit(chat, user, seq: int, text: str) -> EditMessageCommand:
    return EditMessageCommand(chat_id=chat.id, seq=seq, text=text, editor=participant_of(user))


def delete(chat, user, seq: int) -> DeleteMessageCommand:
    return DeleteMessageCommand(chat_id=chat.id, seq=seq, requested_by=participant_of(user))


def join(chat, user) -> AddMemberCommand:
    return AddMemberCommand(chat_id=chat.id, username=user.username, requested_by=participant_of(user))


def leave(chat, user) -> RemoveMemberCommand:
    return RemoveMemberCommand(chat_id=chat.id, username=user.username, requested_by=participant_of(user))


async def commit(*commands) -> list[dict]:
    """Run the commands; return the envelopes they put in the outbox, oldest first (nothing is forwarded)."""
    mark = await outbox_mark()
    for command in commands:
        await run(command)
    return await envelopes_since(mark)


async def commit_and_forward(layer, *commands) -> list[dict]:
    envelopes = await commit(*commands)
    await forward(layer, envelopes)
    return envelopes


async def frames(communicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(count)]


def summary(frame: dict) -> tuple:
    """(type, version, seq or username, live?) of a change's frame."""
    subject = frame["message"]["seq"] if "message" in frame else frame["member"]["username"]
    return frame["type"], frame["version"], subject, frame["event_id"] is not None


@sync_to_async
def database_state(api, chat) -> tuple[dict, set]:
    """What the API shows now: messages by seq, and the usernames of the members."""
    messages = api.get(f"/api/chats/{chat.id}/messages/", {"after_seq": 0, "limit": 200}).json()["results"]
    members = api.get(f"/api/chats/{chat.id}/members/").json()["results"]
    return {message["seq"]: message for message in messages}, {member["username"] for member in members}


def apply(frames_: list[dict], messages: dict, members: set) -> None:
    """What a client does with the frames of its chat stream."""
    for frame in frames_:
        if frame["type"].startswith("message."):
            messages[frame["message"]["seq"]] = frame["message"]
        elif frame["type"] == "member.joined":
            members.add(frame["member"]["username"])
        elif frame["type"] == "member.left":
            members.discard(frame["member"]["username"])


# --- versions on every frame ---------------------------------------------------------------------------


async def test_every_change_on_a_chat_stream_carries_the_chats_next_version(ann, token, chat, bob, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    envelopes = await commit_and_forward(
        channel_layer,
        post(chat, ann, "one"), edit(chat, ann, 1, "one, edited"), delete(chat, ann, 1),
        post(chat, bob, "bob joins by posting"), leave(chat, bob),
    )

    received = await frames(communicator, 6)
    assert [summary(f) for f in received] == [
        ("message.created", 1, 1, True), ("message.edited", 2, 1, True), ("message.deleted", 3, 1, True),
        ("member.joined", 4, "bob", True), ("message.created", 5, 2, True), ("member.left", 6, "bob", True),
    ]
    assert [f["version"] for f in received] == [e["version"] for e in envelopes]
    edited, deleted = received[1]["message"], received[2]["message"]
    assert (edited["text"], edited["deleted"], edited["version"]) == ("one, edited", False, 2) and edited["edited_at"]
    assert (deleted["text"], deleted["deleted"], deleted["version"]) == ("", True, 3)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_the_ephemeral_frames_are_the_only_ones_without_a_version(ann, token, chat, bob, bob_token, channel_layer):
    anns = await connect(f"/ws/chats/{chat.id}/?token={token}", presence=False)
    presence = await anns.receive_json_from(timeout=5)
    assert presence == {"type": "presence", "chat_id": str(chat.id), "online": ["ann"]}
    bobs = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")
    await bobs.send_json_to({"type": "typing"})
    await commit_and_forward(channel_layer, post(chat, ann, "hello"))

    received = {f["type"]: f for f in await frames(anns, 3)}  # the typing and the message race each other
    assert sorted(received) == ["message.created", "presence.joined", "typing"]
    assert {kind: "version" in f for kind, f in received.items()} == {
        "presence.joined": False, "typing": False, "message.created": True}
    await bobs.disconnect()
    await anns.disconnect()


# --- ?after_version= -----------------------------------------------------------------------------------


async def test_a_client_reconnecting_after_the_last_version_it_saw_ends_with_the_databases_state(
    ann, token, chat, bob, cid, dan, channel_layer, client
):
    await commit(post(chat, ann, "one"), post(chat, ann, "two"))
    first = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    seen = await frames(first, 2)
    assert [summary(f) for f in seen] == [("message.created", 1, 1, False), ("message.created", 2, 2, False)]
    await first.disconnect()

    await commit(
        edit(chat, ann, 1, "one, edited"),        # 3: seen before: message.edited
        post(chat, ann, "three"),                 # 4: created while away ...
        edit(chat, ann, 3, "three, edited"),      # 5: ... then edited: once, message.created with the latest text
        delete(chat, ann, 2),                     # 6: seen before: message.deleted
        post(chat, ann, "four"),                  # 7: created while away ...
        delete(chat, ann, 4),                     # 8: ... then deleted: message.created, a tombstone
        post(chat, bob, "hi"),                    # 9, 10: bob joins by posting
        join(chat, cid),                          # 11
        join(chat, dan), leave(chat, dan),        # 12, 13: joined and left while away: member.left only
    )
    second = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version={seen[-1]['version']}")
    replayed = await frames(second, 8)
    assert [summary(f) for f in replayed] == [
        ("message.edited", 3, 1, False), ("message.created", 5, 3, False), ("message.deleted", 6, 2, False),
        ("message.created", 8, 4, False), ("member.joined", 9, "bob", False), ("message.created", 10, 5, False),
        ("member.joined", 11, "cid", False), ("member.left", 13, "dan", False),
    ]
    by_seq = {f["message"]["seq"]: f["message"] for f in replayed if "message" in f}
    assert (by_seq[1]["text"], by_seq[3]["text"]) == ("one, edited", "three, edited") and by_seq[3]["edited_at"]
    assert (by_seq[2]["text"], by_seq[2]["deleted"]) == ("", True)
    assert (by_seq[4]["text"], by_seq[4]["deleted"]) == ("", True)

    forwarded = await commit_and_forward(channel_layer, post(chat, ann, "five"))
    # ann had not read bob's message: her post reads it (chat.read, to her user group: not a change of the chat)
    assert [e["event_type"] for e in forwarded] == ["message.created", "chat.read"]
    live = forwarded[0]
    after = await frames(second, 1)
    assert summary(after[0]) == ("message.created", 14, 6, True) and after[0]["event_id"] == live["event_id"]
    assert await second.receive_nothing(timeout=0.3)

    messages, members = {f["message"]["seq"]: f["message"] for f in seen}, {"ann"}
    apply(replayed + after, messages, members)
    assert (messages, members) == await database_state(client, chat)
    await second.disconnect()


async def test_a_replayed_member_looks_as_it_did_in_its_live_frame(ann, token, chat, bob, channel_layer):
    live_socket = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await commit_and_forward(channel_layer, join(chat, bob))
    [live] = await frames(live_socket, 1)
    await live_socket.disconnect()

    replay = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    [replayed] = await frames(replay, 1)
    assert replayed == {"type": "member.joined", "event_id": None, "chat_id": str(chat.id), "version": 1,
                        "member": live["member"]}
    await replay.disconnect()


async def test_a_replay_longer_than_a_page_arrives_whole_and_in_version_order(ann, token, chat, channel_layer, monkeypatch):
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 3)
    await commit(*[post(chat, ann, f"m{n}") for n in range(1, 9)])  # versions 1-8
    await commit(edit(chat, ann, 2, "m2, edited"), delete(chat, ann, 5), edit(chat, ann, 7, "m7, edited"))  # 9-11

    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=1")
    received = await frames(communicator, 7)
    assert [summary(f) for f in received] == [
        ("message.created", 3, 3, False), ("message.created", 4, 4, False), ("message.created", 6, 6, False),
        ("message.created", 8, 8, False), ("message.created", 9, 2, False), ("message.created", 10, 5, False),
        ("message.created", 11, 7, False),
    ]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_message_changed_while_its_replay_runs_arrives_again_as_edited_not_created_twice(
    ann, token, chat, channel_layer, monkeypatch
):
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 3)
    await commit(*[post(chat, ann, f"m{n}") for n in range(1, 6)])  # versions 1-5
    pages = []
    read = consumers.changes_after

    def changes_after_with_an_edit_between_pages(chat_id, after_version, limit):
        page = read(chat_id, after_version, limit)
        pages.append(after_version)
        if len(pages) == 1:  # the first page is read: m1 (in it) is edited before the second is
            mediator.handle_command(edit(chat, ann, 1, "edited during the replay"))
        return page

    monkeypatch.setattr(consumers, "changes_after", changes_after_with_an_edit_between_pages)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    received = await frames(communicator, 6)
    assert pages[:2] == [0, 3]  # m1 was edited between the first two pages
    assert [summary(f) for f in received] == [
        ("message.created", 1, 1, False), ("message.created", 2, 2, False), ("message.created", 3, 3, False),
        ("message.created", 4, 4, False), ("message.created", 5, 5, False), ("message.edited", 6, 1, False),
    ]
    assert received[-1]["message"]["text"] == "edited during the replay"
    await communicator.disconnect()


async def test_a_change_committed_and_delivered_while_the_replay_runs_arrives_once_in_its_place(
    ann, token, chat, channel_layer, monkeypatch
):
    monkeypatch.setattr(consumers, "REPLAY_PAGE", 2)
    await commit(*[post(chat, ann, f"m{n}") for n in range(1, 5)])  # versions 1-4
    read = consumers.changes_after
    during = []

    def changes_after_while_a_message_is_posted(chat_id, after_version, limit):
        page = read(chat_id, after_version, limit)
        if not during:  # after the first page: a post commits and its live frame reaches the socket
            during.extend(async_to_sync(commit_and_forward)(channel_layer, post(chat, ann, "during the replay")))
        return page

    monkeypatch.setattr(consumers, "changes_after", changes_after_while_a_message_is_posted)
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    received = await frames(communicator, 5)
    assert [summary(f)[:3] for f in received] == [("message.created", v, v) for v in range(1, 6)]
    assert received[-1]["message"]["text"] == "during the replay" and during
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_after_version_beyond_the_chats_version_is_taken_as_the_chats_version(ann, token, chat, channel_layer):
    await commit(post(chat, ann, "one"), post(chat, ann, "two"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=99999999999")
    assert await communicator.receive_nothing(timeout=0.3)  # nothing replayed
    await commit_and_forward(channel_layer, post(chat, ann, "three"))
    assert [summary(f) for f in await frames(communicator, 1)] == [("message.created", 3, 3, True)]
    await communicator.disconnect()


async def test_after_version_and_after_seq_together_are_closed_with_4400_invalid_request(ann, token, chat, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0&after_seq=0")
    frame = await assert_closed_with(communicator, 4400, "invalid_request")
    assert frame["message"]
    await communicator.wait()
    assert await SocketSlots().count(ann.pk) == 0


@pytest.mark.parametrize(
    "after_version", ["-1", "abc", "1.5", "1e3", "99999999999999", "123456789012", "²", "١٢", "+1", "%201"])
async def test_an_after_version_that_is_not_ascii_digits_is_closed_with_4400_and_its_slot_given_back(
    after_version, ann, token, chat, channel_layer
):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version={after_version}")
    await assert_closed_with(communicator, 4400, "invalid_after_version")
    await communicator.wait()
    assert await SocketSlots().count(ann.pk) == 0


async def test_an_empty_after_version_is_closed_with_4400_rather_than_taken_for_none(ann, token, chat, channel_layer):
    """`?after_version=` is not a whole number: a client that meant to resume (and built an empty value) must learn
    so, not get a live-only stream that silently skips what it missed."""
    await commit(post(chat, ann, "missed"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=")
    await assert_closed_with(communicator, 4400, "invalid_after_version")


# --- live frames ---------------------------------------------------------------------------------------


async def test_live_changes_follow_a_replay_with_consecutive_versions_and_repeats_are_dropped(
    ann, token, chat, bob, channel_layer
):
    replayed = await commit(post(chat, ann, "one"), post(chat, ann, "two"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    assert [summary(f) for f in await frames(communicator, 2)] == [
        ("message.created", 1, 1, False), ("message.created", 2, 2, False)]

    live = await commit(edit(chat, ann, 1, "one, edited"), join(chat, bob), delete(chat, ann, 2))
    for envelope in [*replayed, live[0], live[0], live[1], replayed[1], live[0], live[2], live[1], live[2]]:
        await deliver(channel_layer, chat_group(chat.id), envelope)
    received = await frames(communicator, 3)
    assert [summary(f) for f in received] == [
        ("message.edited", 3, 1, True), ("member.joined", 4, "bob", True), ("message.deleted", 5, 2, True)]
    assert [f["event_id"] for f in received] == [e["event_id"] for e in live]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_lost_edit_is_filled_from_the_database_when_the_next_change_shows_the_gap(ann, token, chat, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    created, lost, after = await commit(post(chat, ann, "one"), edit(chat, ann, 1, "one, edited"), post(chat, ann, "two"))
    await deliver(channel_layer, chat_group(chat.id), created)
    await deliver(channel_layer, chat_group(chat.id), after)  # version 2 was lost upstream

    received = await frames(communicator, 3)
    assert [summary(f)[:3] for f in received] == [
        ("message.created", 1, 1), ("message.edited", 2, 1), ("message.created", 3, 2)]
    assert received[0]["event_id"] == created["event_id"] and received[1]["event_id"] is None
    assert received[1]["message"]["text"] == "one, edited"
    assert received[2]["event_id"] in (None, after["event_id"])  # from the database, or live: once either way
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_lost_message_edited_since_arrives_once_as_created_with_its_latest_text(ann, token, chat, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    lost, edited = await commit(post(chat, ann, "one"), edit(chat, ann, 1, "one, edited"))
    await deliver(channel_layer, chat_group(chat.id), edited)  # its creation was lost

    [received] = await frames(communicator, 1)
    assert summary(received) == ("message.created", 2, 1, False) and received["message"]["text"] == "one, edited"
    await deliver(channel_layer, chat_group(chat.id), lost)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_live_change_superseded_by_the_gap_fill_is_not_sent_again(ann, token, chat, channel_layer):
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    created, lost, last = await commit(
        post(chat, ann, "one"), edit(chat, ann, 1, "first edit"), edit(chat, ann, 1, "second edit"))
    await deliver(channel_layer, chat_group(chat.id), created)
    await deliver(channel_layer, chat_group(chat.id), last)  # the first edit was lost

    received = await frames(communicator, 2)
    assert [summary(f)[:3] for f in received] == [("message.created", 1, 1), ("message.edited", 3, 1)]
    assert received[1]["message"]["text"] == "second edit"
    await deliver(channel_layer, chat_group(chat.id), lost)  # arriving late after all
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_lost_last_change_of_a_quiet_chat_is_filled_by_the_position_check(ann, token, chat, channel_layer, settings):
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 0.2
    await commit(post(chat, ann, "one"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}")
    await commit(edit(chat, ann, 1, "one, edited"))  # never forwarded
    [edited] = await frames(communicator, 1)
    assert summary(edited) == ("message.edited", 2, 1, False) and edited["message"]["text"] == "one, edited"
    await commit(delete(chat, ann, 1))  # never forwarded
    [deleted] = await frames(communicator, 1)
    assert summary(deleted) == ("message.deleted", 3, 1, False) and deleted["message"]["deleted"] is True
    assert await communicator.receive_nothing(timeout=1)  # the checks go on, and send nothing twice
    await communicator.disconnect()


# --- ?after_seq= ---------------------------------------------------------------------------------------


async def test_after_seq_still_sends_only_new_messages_by_seq(ann, token, chat, bob, channel_layer):
    await commit(post(chat, ann, "one"), post(chat, ann, "two"), edit(chat, ann, 2, "two, edited"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq=1")
    [replayed] = await frames(communicator, 1)
    assert (replayed["type"], replayed["message"]["seq"], replayed["message"]["text"], replayed["version"]) == (
        "message.created", 2, "two, edited", 3)

    await commit_and_forward(
        channel_layer, edit(chat, ann, 1, "one, edited"), delete(chat, ann, 2), join(chat, bob), leave(chat, bob),
        post(chat, ann, "three"),
    )
    [new] = await frames(communicator, 1)
    assert (new["type"], new["message"]["seq"], new["version"], new["event_id"] is not None) == (
        "message.created", 3, 8, True)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_the_position_check_sends_an_after_seq_client_no_edits(ann, token, chat, channel_layer, settings):
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 0.2
    await commit(post(chat, ann, "one"))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_seq=1")
    await commit(edit(chat, ann, 1, "one, edited"), delete(chat, ann, 1))  # never forwarded
    assert await communicator.receive_nothing(timeout=1)
    await commit(post(chat, ann, "two"))  # never forwarded either: the check fills it
    [filled] = await frames(communicator, 1)
    assert (filled["type"], filled["message"]["seq"], filled["version"], filled["event_id"]) == (
        "message.created", 2, 4, None)
    await communicator.disconnect()


async def test_a_chat_deleted_while_away_closes_a_resuming_client_with_4404(ann, token, chat, channel_layer):
    await commit(post(chat, ann, "one"), DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={token}&after_version=0")
    await assert_closed_with(communicator, 4404, "chat_not_found")
