"""The wire format, in one home: the event envelope the outbox and Kafka carry (built and checked), the
group names events are routed to, and the frames websocket clients receive (docs/protocol.md).

A live event is rendered to text once, by the forwarder, and put in the group message; every socket of
the group sends that same text. With 1,000 subscribers that is one json.dumps instead of a thousand, and
the channel layer carries a flat message instead of the nested envelope (measured in `make bench`, fan-out).

Every frame the server sends is text made by `render` (the consumers' `send_json` uses it too).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rest_framework.fields import DateTimeField

from chats.json_input import parse_json
from chats.runtime.logs import sane_request_id
from chats.serializers import represent_chat, represent_member, represent_message
from messaging_domain.events import (
    ChatDeletedEvent,
    ChatReadEvent,
    Event,
    MemberJoinedEvent,
    MemberLeftEvent,
    MessageDeletedEvent,
    MessageEditedEvent,
    NewChatCreatedEvent,
    NewMessageReceivedEvent,
)
from messaging_domain.values import Visibility

if TYPE_CHECKING:
    from chats.queries import Change

LOBBY_GROUP = "chats"  # every lobby socket: events of public chats


def chat_group(chat_id: uuid.UUID | str) -> str:
    return f"chat.{chat_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user: the lobby's private events (their private chats, memberships, read
    positions), and what ends their sockets (removal from a chat, a deactivated account)."""
    return f"user.{user_id}"


# --- the envelope ----------------------------------------------------------------------------------------

_iso = DateTimeField().to_representation

def _member_payload(event: MemberJoinedEvent | MemberLeftEvent) -> dict[str, Any]:
    return {"chat_id": str(event.chat.id), "member": represent_member(event.member), "chat": represent_chat(event.chat)}


def _read_payload(event: ChatReadEvent) -> dict[str, Any]:
    return {
        "chat_id": str(event.chat_id),
        "username": event.member.user.username,
        "last_read_seq": event.member.last_read_seq,
        "unread": event.unread,
    }


_PAYLOADS = {
    NewChatCreatedEvent: lambda event: represent_chat(event.chat),
    NewMessageReceivedEvent: lambda event: represent_message(event.message),
    MessageEditedEvent: lambda event: represent_message(event.message),
    MessageDeletedEvent: lambda event: represent_message(event.message),
    ChatDeletedEvent: lambda event: represent_chat(event.chat),
    MemberJoinedEvent: _member_payload,
    MemberLeftEvent: _member_payload,
    ChatReadEvent: _read_payload,
}


def _user_ids(event: Event) -> list[int] | None:
    """The users whose sockets an event is for, when it is not for every lobby: what the forwarder routes by,
    so that it never reads the database. None: a public chat's event (every lobby), or a message."""
    if isinstance(event, (MemberJoinedEvent, MemberLeftEvent, ChatReadEvent)):
        return [event.member.user.id]
    if isinstance(event, NewChatCreatedEvent) and event.chat.visibility is Visibility.PRIVATE:
        return [event.chat.owner.id]
    if isinstance(event, ChatDeletedEvent) and event.chat.visibility is Visibility.PRIVATE:
        return list(event.member_ids)
    return None


def envelope(event: Event, request_id: str | None = None) -> dict[str, Any]:
    """The event as it travels on Kafka (docs/protocol.md, "Event envelope").

    `request_id`, optional, is the id of the HTTP request that committed the event, so that the relay, the
    forwarder and the frames can be found in the logs from it; readers must not need it.
    """
    wrapped = {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "occurred_at": _iso(event.occurred_at),
        "chat_id": str(event.chat_id),
        "payload": dict(_PAYLOADS[type(event)](event)),
    }
    if event.version is not None:
        wrapped["version"] = event.version
    user_ids = _user_ids(event)
    if user_ids is not None:
        wrapped["user_ids"] = user_ids
    if request_id is not None:
        wrapped["request_id"] = request_id
    return wrapped


MESSAGE_TYPES = {"message.created", "message.edited", "message.deleted"}
MEMBER_TYPES = {"member.joined", "member.left"}
EVENT_TYPES = {"chat.created", "chat.deleted", "chat.read", *MESSAGE_TYPES, *MEMBER_TYPES}
# Events only some users may see: they must say whose they are (a private chat's creation and deletion too).
ADDRESSED_TYPES = {*MEMBER_TYPES, "chat.read"}
# The changes of a chat's content, each raising its version by one: what a chat stream sends and replays.
VERSIONED_TYPES = {*MESSAGE_TYPES, *MEMBER_TYPES}


def is_addressed(envelope: dict[str, Any]) -> bool:
    """Whether the event goes to some users' sockets (`user_ids`) rather than to every lobby."""
    return envelope["event_type"] in ADDRESSED_TYPES or envelope["payload"].get("visibility") == "private"


class InvalidEnvelope(ValueError):
    """The record is not an event this service wrote; it is logged with its position and skipped."""


def parse_envelope(value: bytes | None) -> dict[str, Any]:
    try:
        parsed = parse_json(value or b"")
    except ValueError as error:
        raise InvalidEnvelope(f"not UTF-8 JSON ({error})") from None
    if not isinstance(parsed, dict):
        raise InvalidEnvelope("not a JSON object")
    missing = {"event_id", "event_type", "occurred_at", "chat_id", "payload"} - parsed.keys()
    if missing:
        raise InvalidEnvelope(f"missing {', '.join(sorted(missing))}")
    if parsed["event_type"] not in EVENT_TYPES:
        raise InvalidEnvelope(f"unknown event_type {parsed['event_type']!r}")
    for key in ("event_id", "chat_id"):
        try:
            uuid.UUID(str(parsed[key]))
        except ValueError:
            raise InvalidEnvelope(f"{key} is not a UUID") from None
    payload = parsed["payload"]
    if not isinstance(payload, dict):
        raise InvalidEnvelope("payload is not an object")
    event_type = parsed["event_type"]
    if event_type in MESSAGE_TYPES and not (
        _positive(payload.get("seq")) and payload.get("chat_id") == parsed["chat_id"]
    ):
        raise InvalidEnvelope(f"{event_type} needs a positive integer seq and the envelope's chat_id")
    if event_type in VERSIONED_TYPES and not _positive(parsed.get("version")):
        raise InvalidEnvelope(f"{event_type} needs a positive integer version")
    if is_addressed(parsed):
        user_ids = parsed.get("user_ids")
        if not (isinstance(user_ids, list) and all(type(uid) is int and uid > 0 for uid in user_ids)):
            raise InvalidEnvelope(f"{parsed['event_type']} of a private chat or a member needs user_ids, a list of ids")
    if parsed["event_type"] in ADDRESSED_TYPES and parsed["payload"].get("chat_id") != parsed["chat_id"]:
        raise InvalidEnvelope(f"{parsed['event_type']} needs the envelope's chat_id in its payload")
    if "request_id" in parsed:  # optional; kept only if sane, as an HTTP header's would be (it goes into logs)
        parsed["request_id"] = sane_request_id(parsed["request_id"])
    return parsed


# --- frames --------------------------------------------------------------------------------------------


def render(frame: dict[str, Any]) -> str:
    """A frame's text, with non-ASCII characters as themselves (UTF-8 on the wire).

    json.dumps' default escapes them: a Cyrillic letter becomes 6 bytes instead of 2, an emoji 12 instead
    of 4, so a 4096-character message made a ~50 KB frame. Text reaching here went through DRF's CharField,
    which refuses lone surrogates, so the result always encodes as UTF-8.
    """
    return json.dumps(frame, ensure_ascii=False)


def _positive(value: Any) -> bool:
    return type(value) is int and value > 0


def message_frame(message: dict[str, Any], event_id: str | None, frame_type: str = "message.created") -> dict[str, Any]:
    """A message frame, live (with its event_id) or replayed from the database (event_id null). `version` is
    the message's: the change it shows is the latest one it had when the frame was made."""
    return {"type": frame_type, "event_id": event_id, "chat_id": message["chat_id"], "version": message["version"],
            "message": message}


def member_frame(member: dict[str, Any], chat_id: str, version: int, left: bool, event_id: str | None = None,
                 chat: dict[str, Any] | None = None) -> dict[str, Any]:
    frame = {"type": "member.left" if left else "member.joined", "event_id": event_id, "chat_id": chat_id,
             "version": version, "member": member}
    if chat is not None:
        frame["chat"] = chat
    return frame


def change_frame(change: Change, chat_id: str, seen_up_to: int, created_here: set[int]) -> dict[str, Any]:
    """A replayed change's frame (chats.queries.changes_after): a message the client has not seen (created
    after `seen_up_to`, and not sent as created in this replay yet) as `message.created` in its current state,
    one it has seen as `message.edited` or `message.deleted`; a member as joined or left."""
    if change.message is None:
        return member_frame(change.member, chat_id, change.version, change.left)
    message = change.message
    if change.created_version > seen_up_to and message["seq"] not in created_here:
        created_here.add(message["seq"])
        frame_type = "message.created"
    else:
        frame_type = "message.deleted" if message["deleted"] else "message.edited"
    return message_frame(message, None, frame_type)


def event_frame(envelope: dict[str, Any]) -> dict[str, Any]:
    event_type, payload = envelope["event_type"], envelope["payload"]
    if event_type in MESSAGE_TYPES:
        return message_frame(payload, envelope["event_id"], event_type)
    frame = {"type": event_type, "event_id": envelope["event_id"], "chat_id": envelope["chat_id"]}
    if "version" in envelope:
        frame["version"] = envelope["version"]
    if event_type == "chat.created":
        frame["chat"] = payload
    elif event_type in ("member.joined", "member.left"):
        frame["member"] = payload.get("member")
        frame["chat"] = payload.get("chat")
    elif event_type == "chat.read":
        frame["last_read_seq"] = payload.get("last_read_seq")
        frame["unread"] = payload.get("unread")
    return frame


def group_message(envelope: dict[str, Any]) -> dict[str, Any]:
    """What the forwarder sends to a group: the frame's text, what a consumer decides on (type, seq), and
    what it measures and logs a frame with: `occurred_at` as a Unix timestamp (parsed here once per event,
    not once per socket), the event's id and the request's id."""
    return {
        "type": "chat.event",
        "event_type": envelope["event_type"],
        "seq": envelope["payload"]["seq"] if envelope["event_type"] in MESSAGE_TYPES else None,
        "version": envelope.get("version"),
        # whose membership changed: a chat stream closes the sockets of a member who left a private chat
        "user_ids": envelope.get("user_ids") if envelope["event_type"] in MEMBER_TYPES else None,
        "frame": render(event_frame(envelope)),
        "event_id": envelope["event_id"],
        "chat_id": envelope["chat_id"],
        "request_id": envelope.get("request_id"),
        "occurred_at": _timestamp(envelope["occurred_at"]),
    }


def _timestamp(occurred_at: Any) -> float | None:
    try:
        return datetime.fromisoformat(occurred_at).timestamp()
    except (TypeError, ValueError):
        return None  # not a date this service wrote: the frame goes out, unmeasured
