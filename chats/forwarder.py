"""Kafka -> channel layer, in small steps that `manage.py forward_events` loops over and tests call.

Each record is checked to be an envelope (DESIGN.md), dropped if its event_id was forwarded recently
(delivery is at least once), and sent to its chat's group and, for chat events, to the lobby group.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import OrderedDict
from typing import Any

from chats.consumers import LOBBY_GROUP, chat_group
from chats.frames import group_message

logger = logging.getLogger("chats.forwarder")

EVENT_TYPES = {"chat.created", "message.created", "chat.deleted"}


class InvalidEnvelope(ValueError):
    """The record is not an event this service wrote; it is logged with its position and skipped."""


def parse_envelope(value: bytes | None) -> dict[str, Any]:
    try:
        envelope = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidEnvelope(f"not UTF-8 JSON ({error})") from None
    if not isinstance(envelope, dict):
        raise InvalidEnvelope("not a JSON object")
    missing = {"event_id", "event_type", "occurred_at", "chat_id", "payload"} - envelope.keys()
    if missing:
        raise InvalidEnvelope(f"missing {', '.join(sorted(missing))}")
    if envelope["event_type"] not in EVENT_TYPES:
        raise InvalidEnvelope(f"unknown event_type {envelope['event_type']!r}")
    for key in ("event_id", "chat_id"):
        try:
            uuid.UUID(str(envelope[key]))
        except ValueError:
            raise InvalidEnvelope(f"{key} is not a UUID") from None
    payload = envelope["payload"]
    if not isinstance(payload, dict):
        raise InvalidEnvelope("payload is not an object")
    if envelope["event_type"] == "message.created" and not (
        isinstance(payload.get("seq"), int) and payload["seq"] > 0 and payload.get("chat_id") == envelope["chat_id"]
    ):
        raise InvalidEnvelope("message.created needs a positive integer seq and the envelope's chat_id")
    return envelope


class RecentEventIds:
    """The last `capacity` event ids, oldest forgotten first: dedup with bounded memory."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def groups_for(envelope: dict[str, Any]) -> list[str]:
    groups = [chat_group(envelope["chat_id"])]
    if envelope["event_type"] != "message.created":
        groups.append(LOBBY_GROUP)
    return groups


async def handle_record(record: Any, channel_layer: Any, recent: RecentEventIds) -> str:
    """Forward one Kafka record; return 'forwarded', 'duplicate' or 'invalid'.

    A channel-layer error propagates: the caller retries the record and commits nothing past it.
    """
    try:
        envelope = parse_envelope(record.value)
    except InvalidEnvelope as error:
        logger.warning(
            "skipping record %s[%d]@%d: %s", record.topic, record.partition, record.offset, error
        )
        return "invalid"
    if envelope["event_id"] in recent:
        return "duplicate"
    message = group_message(envelope)
    for group in groups_for(envelope):
        await channel_layer.group_send(group, message)
    recent.add(envelope["event_id"])
    return "forwarded"
