"""Who may see what on websockets: private chat streams admit members only (4404), a removed member's sockets
close (4403), and each lobby shows its user public chats and their own private ones.

Events are routed here exactly as forward_events routes them (`groups_for`, tested with Kafka in
tests/forwarder/), on the real Redis channel layer.
"""

import pytest
from asgiref.sync import sync_to_async

from chats.adapters import participant_of
from chats.bootstrap import mediator
from chats.models import OutboxEvent
from chats.pipeline.forwarder import groups_for
from chats.pipeline.wire import group_message
from messaging_domain.commands import (
    AddMemberCommand,
    CreateChatCommand,
    CreateMessageCommand,
    DeleteChatCommand,
    MarkReadCommand,
    RemoveMemberCommand,
)
from tests.websocket.test_consumers import (
    assert_closed_with,
    connect,
    receive_past_presence,
)

pytestmark = [
    pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_position_checks"),
]


@sync_to_async
def run(command):
    return mediator.handle_command(command)


@sync_to_async
def envelopes_since(mark: int) -> list[dict]:
    return [row.envelope for row in OutboxEvent.objects.filter(id__gt=mark).order_by("id")]


@sync_to_async
def outbox_mark() -> int:
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


async def forward(layer, envelopes: list[dict]) -> None:
    """What forward_events does with each event."""
    for envelope in envelopes:
        message = group_message(envelope)
        for group in groups_for(envelope):
            await layer.group_send(group, message)


async def commit_and_forward(layer, command):
    mark = await outbox_mark()
    result = await run(command)
    await forward(layer, await envelopes_since(mark))
    return result


def private_chat(owner, title="Secret"):
    return CreateChatCommand(title=title, owner=participant_of(owner), visibility="private")


# --- chat streams ----------------------------------------------------------------------------------


async def test_a_private_chat_is_closed_with_4404_to_a_non_member_as_if_it_did_not_exist(ann, bob, bob_token, channel_layer):
    chat = await run(private_chat(ann))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")
    frame = await assert_closed_with(communicator, 4404, "chat_not_found")
    assert frame["message"] == "No chat has this id."


async def test_a_member_of_a_private_chat_receives_its_messages(ann, bob, bob_token, channel_layer):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")
    await commit_and_forward(channel_layer, CreateMessageCommand(chat_id=chat.id, text="hi bob", author=participant_of(ann)))
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["message"]["text"]) == ("message.created", "hi bob")
    await communicator.disconnect()


async def test_a_member_removed_from_a_private_chat_is_closed_with_4403(ann, bob, bob_token, channel_layer):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    first = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")
    second = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")

    await commit_and_forward(channel_layer, RemoveMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))

    for communicator in (first, second):
        left = await communicator.receive_json_from(timeout=5)  # the change itself first, as every subscriber sees it
        assert (left["type"], left["member"]["username"], left["version"]) == ("member.left", "bob", 2)
        frame = await assert_closed_with(communicator, 4403, "not_a_member")
        assert frame["message"] == "You are no longer a member of this chat."


async def test_a_member_who_leaves_a_private_chat_is_closed_with_4403_and_the_others_stay(
    ann, token, bob, bob_token, channel_layer
):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    anns = await connect(f"/ws/chats/{chat.id}/?token={token}")
    bobs = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")

    await commit_and_forward(channel_layer, RemoveMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(bob)))

    assert (await receive_past_presence(bobs))["type"] == "member.left"
    await assert_closed_with(bobs, 4403, "not_a_member")
    await bobs.disconnect()
    frames = [await anns.receive_json_from(timeout=5) for _ in range(3)]
    assert [(f["type"], f.get("username") or f["member"]["username"]) for f in frames] == [
        ("presence.joined", "bob"), ("member.left", "bob"), ("presence.left", "bob")]
    assert await anns.receive_nothing(timeout=0.5)  # still open, and nothing more
    await anns.send_json_to({"type": "ping"})
    assert await anns.receive_json_from(timeout=5) == {"type": "pong"}
    await anns.disconnect()


async def test_leaving_a_public_chat_keeps_its_stream_open(ann, bob, bob_token, channel_layer):
    chat = await run(CreateChatCommand(title="Open", owner=participant_of(ann)))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(bob)))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")

    await commit_and_forward(channel_layer, RemoveMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(bob)))
    await commit_and_forward(channel_layer, CreateMessageCommand(chat_id=chat.id, text="still here", author=participant_of(ann)))

    left = await communicator.receive_json_from(timeout=5)
    assert (left["type"], left["member"]["username"]) == ("member.left", "bob")
    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["message"]["text"]) == ("message.created", "still here")
    await communicator.disconnect()


async def test_a_stream_ignores_the_users_events_about_other_chats(ann, token, channel_layer):
    watched = await run(private_chat(ann, "Watched"))
    other = await run(private_chat(ann, "Other"))
    communicator = await connect(f"/ws/chats/{watched.id}/?token={token}")

    # ann's user group carries the deletion of her other private chat: this stream must not close for it
    await commit_and_forward(channel_layer, DeleteChatCommand(chat_id=other.id, requested_by=participant_of(ann)))
    await commit_and_forward(channel_layer, CreateMessageCommand(chat_id=watched.id, text="here", author=participant_of(ann)))

    frame = await communicator.receive_json_from(timeout=5)
    assert (frame["type"], frame["chat_id"]) == ("message.created", str(watched.id))
    await communicator.disconnect()


async def test_deleting_a_private_chat_closes_every_members_stream_with_4410(ann, token, bob, bob_token, channel_layer):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    sockets = [await connect(f"/ws/chats/{chat.id}/?token={key}") for key in (token, bob_token)]

    await commit_and_forward(channel_layer, DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))

    for communicator in sockets:
        frame = await receive_past_presence(communicator)
        assert (frame["type"], frame["chat_id"]) == ("chat.deleted", str(chat.id))
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4410}


async def test_a_removed_members_stream_closes_even_when_the_member_left_frame_is_lost(
    ann, bob, bob_token, channel_layer, settings
):
    settings.CHAT_WS_POSITION_CHECK_SECONDS = 0.2
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    communicator = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")

    await run(RemoveMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))  # never forwarded

    await assert_closed_with(communicator, 4403, "not_a_member")


async def test_a_deactivated_users_sockets_are_closed_with_4401(ann, bob, bob_token, channel_layer):
    chat = await run(CreateChatCommand(title="Open", owner=participant_of(ann)))
    lobby = await connect(f"/ws/chats/?token={bob_token}")
    stream = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")

    bob.is_active = False
    await sync_to_async(bob.save)()

    for communicator in (lobby, stream):
        frame = await assert_closed_with(communicator, 4401, "credentials_revoked")
        assert frame["message"] == "This account was deactivated."


# --- lobbies -----------------------------------------------------------------------------------------


async def test_a_public_chat_reaches_every_lobby_and_a_private_one_only_its_owners(
    ann, token, bob, bob_token, channel_layer
):
    anns, bobs = await connect(f"/ws/chats/?token={token}"), await connect(f"/ws/chats/?token={bob_token}")

    secret = await commit_and_forward(channel_layer, private_chat(ann))
    public = await commit_and_forward(channel_layer, CreateChatCommand(title="Open", owner=participant_of(ann)))

    assert [(f["type"], f["chat_id"]) for f in [await anns.receive_json_from(timeout=5) for _ in range(2)]] == [
        ("chat.created", str(secret.id)), ("chat.created", str(public.id))]
    frame = await bobs.receive_json_from(timeout=5)
    assert (frame["type"], frame["chat_id"], frame["chat"]["visibility"]) == ("chat.created", str(public.id), "public")
    assert "membership" not in frame["chat"]
    assert await bobs.receive_nothing(timeout=0.5)
    await anns.disconnect()
    await bobs.disconnect()


async def test_a_user_added_to_a_private_chat_sees_it_appear_and_removed_disappear(
    ann, bob, bob_token, cid, cid_token, channel_layer
):
    chat = await run(private_chat(ann))
    bobs, cids = await connect(f"/ws/chats/?token={bob_token}"), await connect(f"/ws/chats/?token={cid_token}")

    await commit_and_forward(channel_layer, AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    joined = await bobs.receive_json_from(timeout=5)
    assert joined["type"] == "member.joined" and joined["chat_id"] == str(chat.id)
    assert joined["chat"]["title"] == "Secret" and joined["chat"]["member_count"] == 2
    assert (joined["member"]["username"], joined["member"]["role"]) == ("bob", "member")

    await commit_and_forward(channel_layer, RemoveMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    left = await bobs.receive_json_from(timeout=5)
    assert (left["type"], left["chat_id"], left["member"]["username"]) == ("member.left", str(chat.id), "bob")
    assert left["chat"]["member_count"] == 1

    assert await cids.receive_nothing(timeout=0.5)  # another user learns nothing of it
    await bobs.disconnect()
    await cids.disconnect()


async def test_a_private_chats_deletion_reaches_its_members_lobbies_only(
    ann, token, bob, bob_token, cid, cid_token, channel_layer
):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    lobbies = {name: await connect(f"/ws/chats/?token={key}") for name, key in
               [("ann", token), ("bob", bob_token), ("cid", cid_token)]}

    await commit_and_forward(channel_layer, DeleteChatCommand(chat_id=chat.id, requested_by=participant_of(ann)))

    for name in ("ann", "bob"):
        frame = await lobbies[name].receive_json_from(timeout=5)
        assert (frame["type"], frame["chat_id"]) == ("chat.deleted", str(chat.id))
    assert await lobbies["cid"].receive_nothing(timeout=0.5)
    for communicator in lobbies.values():
        await communicator.disconnect()


async def test_a_read_position_reaches_the_users_other_lobbies_only(ann, token, bob, bob_token, channel_layer):
    chat = await run(CreateChatCommand(title="Open", owner=participant_of(ann)))
    for n in range(3):
        await run(CreateMessageCommand(chat_id=chat.id, text=f"m{n}", author=participant_of(bob)))
    phone, laptop = await connect(f"/ws/chats/?token={token}"), await connect(f"/ws/chats/?token={token}")
    bobs = await connect(f"/ws/chats/?token={bob_token}")

    await commit_and_forward(channel_layer, MarkReadCommand(chat_id=chat.id, seq=2, reader=participant_of(ann)))

    for communicator in (phone, laptop):
        frame = await communicator.receive_json_from(timeout=5)
        assert {k: frame[k] for k in ("type", "chat_id", "last_read_seq", "unread")} == {
            "type": "chat.read", "chat_id": str(chat.id), "last_read_seq": 2, "unread": 1}
    assert await bobs.receive_nothing(timeout=0.5)
    for communicator in (phone, laptop, bobs):
        await communicator.disconnect()


async def test_a_deleted_user_leaves_their_chats_and_their_sockets_are_closed_with_4401(
    ann, bob, bob_token, channel_layer
):
    chat = await run(private_chat(ann))
    await run(AddMemberCommand(chat_id=chat.id, username="bob", requested_by=participant_of(ann)))
    stream = await connect(f"/ws/chats/{chat.id}/?token={bob_token}")
    mark, bob_id = await outbox_mark(), bob.pk

    await sync_to_async(bob.delete)()

    await assert_closed_with(stream, 4401, "credentials_revoked")
    left = [e for e in await envelopes_since(mark)]
    assert [(e["event_type"], e["payload"]["member"]["username"], e["user_ids"]) for e in left] == [
        ("member.left", "bob", [bob_id])]
    assert left[0]["payload"]["chat"]["member_count"] == 1
