"""The service's ASGI application plus two bench-only websockets, the floors our own sockets compare with.

`ws://HOST/bench/ws/` is accepted by daphne and then only waits for its close: no middleware, no user, no
channel layer, no group. Comparing the memory a chat socket takes with the memory this one takes shows
what the service's consumer adds per connection, apart from what daphne itself needs.

`ws://HOST/bench/ws/fanout/` is the thinnest Channels consumer that fans out: it joins one group on the
service's channel layer and sends each group message's text as it is, with no authentication, no
session, no seq bookkeeping. The bench group_sends to it directly, so the fan-out scenario can show what
daphne + Channels + the layer deliver to real sockets, between raw group_send and the whole service.
"""

from channels.generic.websocket import AsyncWebsocketConsumer

from chatproject.asgi import application as service

BARE_WEBSOCKET_PATH = "/bench/ws/"
BARE_FANOUT_PATH = "/bench/ws/fanout/"
BARE_FANOUT_GROUP = "bench.fanout"


async def idle_websocket(scope, receive, send) -> None:
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.disconnect":
            return


class BareFanoutConsumer(AsyncWebsocketConsumer):
    groups = [BARE_FANOUT_GROUP]  # joined on connect, left on disconnect, by Channels

    # Like the service's consumers, group messages skip Channels' per-message hop to a worker thread
    # (it closes stale database connections; nothing here touches the database).
    async def dispatch(self, message):
        if message["type"] == "bench.frame":
            await self.send(text_data=message["text"])
        else:
            await super().dispatch(message)


bare_fanout = BareFanoutConsumer.as_asgi()


async def application(scope, receive, send) -> None:
    if scope["type"] == "websocket" and scope["path"] == BARE_WEBSOCKET_PATH:
        return await idle_websocket(scope, receive, send)
    if scope["type"] == "websocket" and scope["path"] == BARE_FANOUT_PATH:
        return await bare_fanout(scope, receive, send)
    return await service(scope, receive, send)
