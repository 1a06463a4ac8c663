"""Edits, deletions and the chat version through the real processes: two web processes (daphne) on one
port, relay_outbox and forward_events, Kafka and Redis; clients over HTTP and websockets only.

A client that was away while others edited, deleted, posted, joined and left comes back with
`?after_version=<the last version it had>` and ends with exactly what the database holds (the messages API),
each version arriving at most once and in increasing order, the replay showing each changed message once in
its current state; long non-ASCII edits cross daphne byte-exact, live and replayed.
"""

import asyncio
import json
import urllib.request
import uuid
from typing import Any
from urllib.error import HTTPError

import pytest

from tests.e2e.test_live_delivery import (  # noqa: F401  (stack is a fixture)
    FIRST_EVENT_TIMEOUT,
    RECV_TIMEOUT,
    Stack,
    chat_stream,
    open_stream,
    receive_frames,
    stack,
)

pytestmark = pytest.mark.django_db(transaction=True)

PRESENCE = {"presence", "presence.joined", "presence.left"}
EPHEMERAL = PRESENCE | {"typing", "pong"}
CYRILLIC = "ж" * 4096  # 2 bytes each in UTF-8
EMOJI = "😀" * 4096  # 4 bytes each, a surrogate pair in UTF-16
MIXED = "ж😀" * 2048


class Mirror:
    """What a client knows of a chat, built from its stream's frames alone, as a page would build it."""

    def __init__(self) -> None:
        self.messages: dict[int, dict] = {}
        self.members: set[str] = set()
        self.versions: list[int] = []
        self.frames: list[dict] = []  # the changes, in the order received

    @property
    def version(self) -> int:
        return self.versions[-1] if self.versions else 0

    def apply(self, frame: dict) -> None:
        if frame["type"] in EPHEMERAL:
            return
        assert frame["type"] in ("message.created", "message.edited", "message.deleted", "member.joined",
                                 "member.left"), frame
        version = frame["version"]
        assert type(version) is int and version > self.version, (version, self.versions)  # once, in order
        self.versions.append(version)
        self.frames.append(frame)
        if frame["type"].startswith("message."):
            message = frame["message"]
            assert message["version"] == version, frame
            seq = message["seq"]
            if frame["type"] == "message.created":
                assert seq not in self.messages, f"seq {seq} created twice"
            else:
                assert seq in self.messages, f"{frame['type']} of seq {seq}, never created on this client"
                assert message["deleted"] == (frame["type"] == "message.deleted"), frame
            self.messages[seq] = message
        elif frame["type"] == "member.joined":
            self.members.add(frame["member"]["username"])
        else:
            self.members.discard(frame["member"]["username"])

    async def read_until(self, ws, version: int, timeout: float = RECV_TIMEOUT) -> list[dict]:
        """Apply frames until the stream has shown `version`; the changes that came, in order."""
        start = len(self.frames)
        while self.version < version:
            self.apply(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        assert self.version == version, (self.version, version)
        return self.frames[start:]


def call(stack: Stack, method: str, path: str, body: dict | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request, as an outside client, with any extra headers (Idempotency-Key)."""
    all_headers = {"Content-Type": "application/json", "Authorization": f"Token {token}", **(headers or {})}
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{stack.port}{path}", data, all_headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=RECV_TIMEOUT) as response:
            status, raw = response.status, response.read()
    except HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


class Chat:
    """One chat over HTTP, every call checked for the status it must answer."""

    def __init__(self, stack: Stack, chat_id: str) -> None:
        self.stack, self.id = stack, chat_id

    async def call(self, method: str, path: str, body: dict | None, token: str, expect: int,
                   headers: dict[str, str] | None = None) -> Any:
        status, answer = await asyncio.to_thread(
            call, self.stack, method, f"/api/chats/{self.id}/{path}", body, token, headers)
        assert status == expect, (method, path, status, answer)
        return answer

    async def post(self, token: str, text: str) -> dict:
        return await self.call("POST", "messages/", {"text": text}, token, 201)

    async def edit(self, token: str, seq: int, text: str, expect: int = 200, key: str | None = None) -> dict:
        headers = {"Idempotency-Key": key} if key else None
        return await self.call("PATCH", f"messages/{seq}/", {"text": text}, token, expect, headers)

    async def delete(self, token: str, seq: int, expect: int = 204) -> None:
        await self.call("DELETE", f"messages/{seq}/", None, token, expect)

    async def version(self, token: str) -> int:
        return (await self.call("GET", "", None, token, 200))["version"]

    async def messages(self, token: str) -> dict[int, dict]:
        """Every message of the chat, tombstones included, as the API pages them (oldest first)."""
        found: dict[int, dict] = {}
        after = 0
        while True:
            page = await self.call("GET", f"messages/?after_seq={after}&limit=200", None, token, 200)
            for message in page["results"]:
                found[message["seq"]] = message
            if not page["next"]:
                return found
            after = page["results"][-1]["seq"]

    async def members(self, token: str) -> set[str]:
        page = await self.call("GET", "members/?limit=200", None, token, 200)
        assert page["next"] is None
        return {member["username"] for member in page["results"]}


async def new_chat(stack: Stack, token: str, title: str) -> Chat:
    """A public chat, once its creation has come through the whole path (the forwarder is live)."""
    async with stack.ws("/ws/chats/", token=token) as lobby:
        status, created = await asyncio.to_thread(stack.call, "POST", "/api/chats/", {"title": title}, token)
        assert status == 201, created
        [frame] = await receive_frames(lobby, 1, timeout=FIRST_EVENT_TIMEOUT)
        assert (frame["type"], frame["chat_id"], frame["version"]) == ("chat.created", created["id"], 0)
    return Chat(stack, created["id"])


def kinds(frames: list[dict]) -> list[tuple]:
    """(type, seq or username, event_id is set) of each change frame."""
    return [(frame["type"], frame["message"]["seq"] if "message" in frame else frame["member"]["username"],
             frame["event_id"] is not None) for frame in frames]


def test_a_client_away_for_edits_deletions_posts_and_members_resumes_by_version_to_the_databases_state(stack):
    ann, bob, cid, dan = (stack.register(name) for name in ("ann", "bob", "cid", "dan"))

    async def scenario():
        chat = await new_chat(stack, ann, "Edits")
        always, away = Mirror(), Mirror()  # ann never leaves; cid goes away and comes back
        async with chat_stream(stack, chat.id, ann, ["ann"], after_version=0) as anns:
            cids = await open_stream(stack, chat.id, cid, ["ann", "cid"], after_version=0)
            for n in range(1, 5):
                await chat.post(ann, f"ann's {n}")  # seq 1-4, versions 1-4
            await chat.post(bob, "bob's 5")  # bob joins by posting (version 5): seq 5, version 6
            await chat.post(bob, "bob's 6")  # seq 6, version 7
            assert await chat.version(ann) == 7
            assert kinds(await away.read_until(cids, 7)) == [
                *(("message.created", seq, True) for seq in range(1, 5)), ("member.joined", "bob", True),
                ("message.created", 5, True), ("message.created", 6, True)]
            await cids.close()
            left_at = away.version

            # While cid is away:
            await chat.edit(ann, 1, "ann's 1, edited")
            await chat.edit(ann, 1, "ann's 1, edited twice")  # two versions, one frame on resume
            await chat.edit(ann, 1, "ann's 1, edited twice")  # the same text: no change, no version
            await chat.edit(ann, 2, "ann's 2, edited")
            await chat.delete(ann, 2)  # edited, then deleted: arrives as deleted
            await chat.delete(ann, 2)  # a tombstone again: no change
            await chat.edit(ann, 2, "too late", expect=409)
            await chat.edit(ann, 3, "ann's 3 → ж😀 edited")
            await chat.delete(bob, 5)  # the author
            await chat.delete(ann, 6)  # the chat's owner, of bob's message
            await chat.edit(bob, 4, "not bob's", expect=403)
            await chat.delete(cid, 4, expect=403)
            for n in (7, 8, 9):
                await chat.post(ann, f"ann's {n}")
            await chat.edit(ann, 8, "ann's 8, edited")  # created and edited while away: created, latest text
            await chat.delete(ann, 9)  # created and deleted while away: created, as a tombstone
            await chat.post(bob, "bob's 10")
            await chat.edit(bob, 10, "bob's 10, edited")
            await chat.call("POST", "members/", {}, dan, 201)  # dan joins ...
            await chat.post(dan, "dan's 11")
            await chat.call("DELETE", "members/dan/", None, dan, 204)  # ... and leaves: one frame, left
            await chat.edit(ann, 12, "no such message", expect=404)
            await chat.delete(ann, 12, expect=404)
            # 2 + 2 + 1 + 1 + 1 + 3 + 1 + 1 + 2 + 3 changes since version 7
            final = await chat.version(ann)
            assert final == 7 + 17

            await always.read_until(anns, final)  # live all along: every change, once, in order

            cids = await open_stream(stack, chat.id, cid, ["ann", "cid"], after_version=left_at)
            replayed = await away.read_until(cids, final)
            # One frame per message or member changed after version 7, in its current state, in version order
            # (each at its latest change): created if cid never had it, else edited or deleted; no event ids.
            assert [(*kind, frame["version"]) for kind, frame in zip(kinds(replayed), replayed)] == [
                ("message.edited", 1, False, 9), ("message.deleted", 2, False, 11), ("message.edited", 3, False, 12),
                ("message.deleted", 5, False, 13), ("message.deleted", 6, False, 14),
                ("message.created", 7, False, 15), ("message.created", 8, False, 18),
                ("message.created", 9, False, 19), ("message.created", 10, False, 21),
                ("message.created", 11, False, 23), ("member.left", "dan", False, 24)]
            by_seq = {frame["message"]["seq"]: frame["message"] for frame in replayed if "message" in frame}
            assert (by_seq[1]["text"], by_seq[2]["text"], by_seq[2]["deleted"]) == ("ann's 1, edited twice", "", True)
            assert (by_seq[3]["text"], by_seq[5]["text"], by_seq[6]["deleted"]) == ("ann's 3 → ж😀 edited", "", True)
            assert (by_seq[8]["text"], by_seq[8]["edited_at"] is not None) == ("ann's 8, edited", True)
            assert (by_seq[9]["text"], by_seq[9]["deleted"]) == ("", True)
            assert (by_seq[7]["edited_at"], by_seq[7]["deleted"]) == (None, False)
            assert replayed[-1]["member"]["username"] == "dan"

            # Then live, on both streams: a post and an edit after the replay.
            await chat.post(ann, "ann's 12")
            await chat.edit(bob, 10, "bob's 10, edited again")
            assert kinds(await away.read_until(cids, final + 2)) == [
                ("message.created", 12, True), ("message.edited", 10, True)]
            await always.read_until(anns, final + 2)
            await cids.close()

            database = await chat.messages(ann)
            assert sorted(database) == list(range(1, 13))
            assert away.messages == database  # every field: text, deleted, edited_at, version ...
            assert always.messages == database
            assert {"ann"} | away.members == await chat.members(ann) == {"ann", "bob"}
            assert [seq for seq, message in database.items() if message["deleted"]] == [2, 5, 6, 9]
            # The messages API's versions are the latest each message had; the chat is at the highest change.
            assert max(message["version"] for message in database.values()) == await chat.version(ann) == final + 2

    asyncio.run(scenario())


def test_4096_character_cyrillic_and_emoji_edits_cross_daphne_byte_exact_live_and_on_resume(stack):
    ann, bob = stack.register("ann"), stack.register("bob")

    async def scenario():
        chat = await new_chat(stack, ann, "Long edits")
        first = await chat.post(ann, "short")  # seq 1, version 1
        async with chat_stream(stack, chat.id, ann, ["ann"]) as one, \
                chat_stream(stack, chat.id, ann, ["ann"]) as two, \
                chat_stream(stack, chat.id, bob, ["ann", "bob"]) as bobs:
            key = str(uuid.uuid4())
            edited = await chat.edit(ann, 1, CYRILLIC, key=key)  # version 2
            assert (edited["text"], edited["version"], edited["id"]) == (CYRILLIC, 2, first["id"])
            again = await chat.edit(ann, 1, CYRILLIC, key=key)  # a repeat: the message as it is, no event
            assert again == edited
            await chat.edit(ann, 1, EMOJI)  # version 3
            second = await chat.post(ann, EMOJI)  # seq 2, version 4
            assert second["text"] == EMOJI
            await chat.edit(ann, 2, MIXED)  # version 5
            await chat.delete(ann, 2)  # version 6
            expected = [("message.edited", 1, CYRILLIC), ("message.edited", 1, EMOJI), ("message.created", 2, EMOJI),
                        ("message.edited", 2, MIXED), ("message.deleted", 2, "")]
            for ws in (one, two, bobs):
                raw = []
                while len(raw) < len(expected):
                    frame = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
                    if json.loads(frame)["type"] not in EPHEMERAL:
                        raw.append(frame)
                frames = [json.loads(frame) for frame in raw]
                assert [(f["type"], f["message"]["seq"], f["message"]["text"]) for f in frames] == expected
                assert [f["version"] for f in frames] == [2, 3, 4, 5, 6]
                # UTF-8 on the wire, not \u escapes: each frame holds its text as it is.
                assert all(text in frame for frame, (_, _, text) in zip(raw, expected))
                assert len(raw[1].encode()) < 4096 * 4 + 1024  # an escaped emoji would take 12 bytes
                await ws.send('{"type": "ping"}')  # nothing else was queued (the repeat made no event)
                while (frame := json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)))["type"] != "pong":
                    assert frame["type"] in EPHEMERAL, frame

        for after_version, expected in (
            (0, [("message.created", 1, EMOJI, 3), ("message.created", 2, "", 6)]),
            (1, [("message.edited", 1, EMOJI, 3), ("message.created", 2, "", 6)]),
            (4, [("message.deleted", 2, "", 6)]),  # seq 2 was seen (created at 4): only its deletion
            (6, []),
            (10**11 - 1, []),  # beyond the chat's version: taken as the chat's version
        ):
            async with chat_stream(stack, chat.id, bob, after_version=after_version) as resumed:
                raw = [await asyncio.wait_for(resumed.recv(), RECV_TIMEOUT) for _ in expected]
                frames = [json.loads(frame) for frame in raw]
                assert [(f["type"], f["message"]["seq"], f["message"]["text"], f["version"]) for f in frames] == expected
                assert all(f["event_id"] is None for f in frames)
                assert all(text in frame for frame, (_, _, text, _) in zip(raw, expected))
                await resumed.send('{"type": "ping"}')
                # ann's presence.left may arrive first (her socket closed just before): ephemeral, not a change
                while (frame := json.loads(await asyncio.wait_for(resumed.recv(), RECV_TIMEOUT)))["type"] in PRESENCE:
                    pass
                assert frame == {"type": "pong"}

        database = await chat.messages(bob)
        assert (database[1]["text"], database[1]["version"], database[1]["edited_at"] is not None) == (EMOJI, 3, True)
        assert (database[2]["text"], database[2]["deleted"], database[2]["version"]) == ("", True, 6)

    asyncio.run(scenario())
