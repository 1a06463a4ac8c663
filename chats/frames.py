"""The frames websocket clients receive for events (DESIGN.md, "Websocket protocol"), built in one place.

A live event is rendered to text once, by the forwarder, and put in the group message; every socket of
the group sends that same text. With 1,000 subscribers that is one json.dumps instead of a thousand, and
the channel layer carries a flat message instead of the nested envelope (`make bench`, fan-out).

Every frame the server sends is text made by `render` (the consumers' `encode_json` uses it too).
"""

from __future__ import annotations

import json
from typing import Any


def render(frame: dict[str, Any]) -> str:
    """A frame's text, with non-ASCII characters as themselves (UTF-8 on the wire).

    json.dumps' default escapes them: a Cyrillic letter becomes 6 bytes instead of 2, an emoji 12 instead
    of 4, so a 4096-character message made a ~50 KB frame. Text reaching here went through DRF's CharField,
    which refuses lone surrogates, so the result always encodes as UTF-8.
    """
    return json.dumps(frame, ensure_ascii=False)


def message_frame(message: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    """`message.created`, live (with its event_id) or replayed from the database (event_id null)."""
    return {"type": "message.created", "event_id": event_id, "chat_id": message["chat_id"], "message": message}


def event_frame(envelope: dict[str, Any]) -> dict[str, Any]:
    if envelope["event_type"] == "message.created":
        return message_frame(envelope["payload"], envelope["event_id"])
    frame = {"type": envelope["event_type"], "event_id": envelope["event_id"], "chat_id": envelope["chat_id"]}
    if envelope["event_type"] == "chat.created":
        frame["chat"] = envelope["payload"]
    return frame


def group_message(envelope: dict[str, Any]) -> dict[str, Any]:
    """What the forwarder sends to a group: the frame's text, and what a consumer decides on (type, seq)."""
    return {
        "type": "chat.event",
        "event_type": envelope["event_type"],
        "seq": envelope["payload"]["seq"] if envelope["event_type"] == "message.created" else None,
        "frame": render(event_frame(envelope)),
    }
