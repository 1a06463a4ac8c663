"""Private chats through the real processes: two web processes (daphne), the relay, the forwarder, Kafka and
Redis. What a user's sockets see of a private chat, decided by the envelope's routing alone: nothing before
they are added, the chat appearing in their lobby when they are, its messages live, and close 4403 on
removal; a third user sees nothing of it at any point.
"""

import asyncio

import pytest

from tests.e2e.test_live_delivery import (  # noqa: F401  (stack is a fixture)
    FIRST_EVENT_TIMEOUT,
    RECV_TIMEOUT,
    chat_stream,
    frames_until_closed,
    receive_frames,
    stack,
)

pytestmark = pytest.mark.django_db(transaction=True)

CYRILLIC = "ж" * 4096


async def assert_quiet(ws) -> None:
    """Nothing was queued for this socket: a ping's pong is the next frame."""
    await ws.send('{"type": "ping"}')
    assert await receive_frames(ws, 1) == [{"type": "pong"}]


def test_a_private_chat_is_seen_only_by_its_members_on_the_wire(stack):
    ann, bob, cid = (stack.register(name) for name in ("ann", "bob", "cid"))

    async def scenario():
        async with stack.ws("/ws/chats/", token=ann) as anns, stack.ws("/ws/chats/", token=bob) as bobs, \
                stack.ws("/ws/chats/", token=cid) as cids:
            status, chat = await asyncio.to_thread(
                stack.call, "POST", "/api/chats/", {"title": "Secret", "visibility": "private"}, ann)
            assert (status, chat["visibility"], chat["membership"]["role"]) == (201, "private", "owner"), chat
            [created] = await receive_frames(anns, 1, timeout=FIRST_EVENT_TIMEOUT)
            assert (created["type"], created["chat_id"]) == ("chat.created", chat["id"])
            path = f"/ws/chats/{chat['id']}/"

            async with stack.ws(path, token=bob) as refused:
                frames, code = await frames_until_closed(refused)
            assert (code, [f.get("code") for f in frames]) == (4404, ["chat_not_found"])

            status, member = await asyncio.to_thread(
                stack.call, "POST", f"/api/chats/{chat['id']}/members/", {"username": "bob"}, ann)
            assert (status, member["username"], member["role"]) == (201, "bob", "member"), member
            [joined] = await receive_frames(bobs, 1)
            assert (joined["type"], joined["chat_id"], joined["chat"]["title"]) == ("member.joined", chat["id"], "Secret")

            async with chat_stream(stack, chat["id"], bob, ["bob"]) as stream:
                status, posted = await asyncio.to_thread(
                    stack.call, "POST", f"/api/chats/{chat['id']}/messages/", {"text": CYRILLIC}, ann)
                assert status == 201, posted
                [message] = await receive_frames(stream, 1)
                # versions: bob joined at 1, the message is 2
                assert (message["type"], message["version"], message["message"]["text"]) == (
                    "message.created", 2, CYRILLIC)

                status, _ = await asyncio.to_thread(
                    stack.call, "DELETE", f"/api/chats/{chat['id']}/members/bob/", None, ann)
                assert status == 204
                frames, code = await frames_until_closed(stream)
                # The stream shows the removal (member.left, version 3) and closes; the web process's position
                # check, which closes a removed member's sockets even if that frame is lost, may come first.
                assert code == 4403
                assert [(f["type"], f.get("code")) for f in frames][-1] == ("error", "not_a_member")
                assert [(f["type"], f["version"], f["member"]["username"]) for f in frames[:-1]] in (
                    [], [("member.left", 3, "bob")])
            [left] = await receive_frames(bobs, 1)
            assert (left["type"], left["chat_id"], left["member"]["username"]) == ("member.left", chat["id"], "bob")

            status, body = await asyncio.to_thread(stack.call, "GET", f"/api/chats/{chat['id']}/", None, bob)
            assert (status, body["error"]["code"]) == (404, "chat_not_found")
            await assert_quiet(cids)  # cid never heard of it
            await assert_quiet(anns)  # ann's lobby got only the creation: member events are the member's

    asyncio.run(scenario())
