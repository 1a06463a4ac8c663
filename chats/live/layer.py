"""The channel layer: channels-redis' pub/sub layer, with this process's websockets as direct receivers.

On the stock layer every consumer has a channel of its own: an `asyncio.Queue` (four deques, ~3 KB), a task
waiting on it for the socket's whole life (~2 KB with its frames) and a Redis subscription, and each group
message is unpacked once per socket. Nothing here ever sends to one socket's channel, though: every event,
typing notice and presence change reaches sockets through groups. So a socket `attach`es itself to the layer
instead: it is given a channel name (for `group_add`) but no queue and no subscription, and the layer's reader
hands it each group message as it arrives (`put_nowait`, as it would a queue). A message is unpacked once for
all the sockets it reaches (`deserialize` keeps the last one: they are read, never changed).

`new_channel`/`receive` work as before, for consumers that want a channel of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close


class Receiver(Protocol):
    def put_nowait(self, message: bytes) -> None:
        """Take one packed message; called on the event loop, must not block."""


class DirectLoopLayer(RedisPubSubLoopLayer):
    def attach(self, receiver: Receiver, prefix: str = "specific.") -> str:
        """A channel name for `receiver`, which gets every message of the groups it is added to."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = receiver
        return channel

    def detach(self, channel: str) -> None:
        """`receiver` gets nothing more (leave its groups first)."""
        self.channels.pop(channel, None)


class DirectPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last: tuple[bytes, dict] | None = None

    def _get_layer(self) -> DirectLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = DirectLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer

    def attach(self, receiver: Receiver) -> str:
        return self._get_layer().attach(receiver)

    def detach(self, channel: str) -> None:
        self._get_layer().detach(channel)

    def deserialize(self, message: bytes) -> dict:
        last = self._last
        if last is not None and last[0] is message:
            return last[1]
        unpacked = super().deserialize(message)
        self._last = (message, unpacked)
        return unpacked
