"""The service's ASGI application, plus a websocket that does nothing: the floor for memory per socket.

`ws://HOST/bench/ws/` is accepted by daphne and then only waits for its close: no middleware, no user, no
channel layer, no group. Comparing the memory a chat socket takes with the memory this one takes shows
what the service's consumer adds per connection, apart from what daphne itself needs.
"""

from chatproject.asgi import application as service

BARE_WEBSOCKET_PATH = "/bench/ws/"


async def idle_websocket(scope, receive, send) -> None:
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.disconnect":
            return


async def application(scope, receive, send) -> None:
    if scope["type"] == "websocket" and scope["path"] == BARE_WEBSOCKET_PATH:
        return await idle_websocket(scope, receive, send)
    return await service(scope, receive, send)
