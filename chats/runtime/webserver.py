"""The web server: daphne, with our own request and websocket protocol classes. `manage.py serve` runs it as
`python -m chats.runtime.webserver <daphne's arguments>`.

daphne decides what crosses the wire before the application sees anything; three of its choices are wrong
for this service, and each is changed by a subclass here:

- **Close codes.** daphne closes a websocket through autobahn's `sendClose`, which takes only 1000 and
  3000-4999, so a consumer's `close(code=1009)` (a frame over the size limit) raised inside daphne and the
  client saw no close code. `WebSocketProtocol` sends the protocol's own codes through `sendCloseFrame`, as
  daphne itself does for 1011.
- **Request body size.** twisted reads a whole body into memory or a temporary file before daphne calls
  the application, and a chunked body declares no size at all: a 400 MB chunked POST was read in full
  (the web process grew from 113 to 516 MB and stayed there) before Django could refuse it. `WebRequest`
  answers 413 as soon as a body is known to be over DATA_UPLOAD_MAX_MEMORY_SIZE: at the headers for a
  Content-Length, while it streams in for a chunked body. The service takes no file uploads, so the limit
  holds for every body, before authentication.
- **Reason phrases.** twisted writes `Unknown Status` for a code missing from its table (429, 422, 451 ...),
  so a throttled client read `429 Unknown Status`. `WebRequest` gives such a code its standard phrase.
- **Chunked bodies.** Django reads a body up to its content-length header, and reads nothing without one,
  so a chunked body reached the views empty. daphne has the whole body when it calls the application, so
  the request is handed on with the length it turned out to have.

Websocket frame sizes: autobahn's limits (`--websocket-max-message-size`/`--websocket-max-frame-size`) hold
for the frames the server sends too, where going over closes the socket with 1011. They are only a memory
ceiling here (`serve.MAX_WEBSOCKET_MESSAGE_BYTES`), far above any frame the server sends; the limit on what a
client sends is CHAT_WS_MAX_FRAME_BYTES, kept by the consumer (`EventStreamConsumer.receive`).
"""

from __future__ import annotations

# daphne.server installs the asyncio reactor: it must be imported before anything imports twisted's.
from daphne import server  # isort:skip

import io
import json
import logging
import os
import sys
from http import HTTPStatus

from daphne import cli, http_protocol, ws_protocol
from django.conf import settings
from twisted.internet import reactor
from twisted.web.http import RESPONSES

from chats.runtime import metrics
from chats.runtime.heap import freeze_startup_objects
from chats.runtime.logs import access_log

logger = logging.getLogger("chats.runtime.webserver")

# Close codes an endpoint may put in a close frame (RFC 6455 section 7.4, the IANA registry); 1004-1006
# and 1015 are never sent. daphne's `sendClose` takes 1000 and 3000-4999 only.
PROTOCOL_CLOSE_CODES = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

# After a 413 the connection stays open this long, reading and dropping what the client still sends:
# closing a socket with unread data resets it, and a client still sending its body could lose the answer.
LINGER_SECONDS = 5.0


def body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large_response() -> bytes:
    # Imported here, not at the top: it loads DRF, which needs Django set up (the application does that).
    from chats.api.errors import RequestTooLarge, error_body

    body = json.dumps(error_body("request_too_large", RequestTooLarge.default_detail), separators=(",", ":")).encode()
    return (
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


class WebRequest(http_protocol.WebRequest):
    """An HTTP request whose body is refused with 413 once it is over the limit, and whose chunked body
    reaches the application with its length."""

    body_is_chunked = False  # not `chunked`: twisted's Request uses that name for the response
    refused = False
    received = 0
    linger = None

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if message is None and code not in RESPONSES:
            try:
                message = HTTPStatus(code).phrase.encode("ascii")
            except ValueError:
                pass  # no standard phrase either: twisted's "Unknown Status"
        super().setResponseCode(code, message)

    def gotLength(self, length: int | None) -> None:
        """Called by twisted once the headers are in: `length` is Content-Length, or None if chunked."""
        limit = body_limit()
        if length is None:
            self.body_is_chunked = True
            self.content = io.BytesIO()  # at most the limit: handleContentChunk refuses more
        elif limit is not None and length > limit:
            self.content = io.BytesIO()
            self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after our answer
            self.refuse(f"Content-Length {length}")
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        limit = body_limit()
        if limit is not None and self.received > limit:
            self.refuse(f"a body over {limit} bytes")
            return
        super().handleContentChunk(data)

    def refuse(self, what: str) -> None:
        """Answers 413 and closes the connection without reading the rest of the body into memory.

        twisted's parser is still in the middle of the body, so the answer is written to the transport
        directly (as twisted's own 400 is) instead of through the request, and the connection is never
        reused: the client's remaining bytes are dropped unparsed until it closes, or for LINGER_SECONDS.
        """
        self.refused = True
        self.content = io.BytesIO()
        channel, transport = self.channel, self.channel.transport
        peer = transport.getPeer()
        logger.warning("413: refused %s from %s:%s", what, getattr(peer, "host", peer), getattr(peer, "port", ""))
        transport.write(too_large_response())
        transport.loseWriteConnection()  # the answer, then FIN; reading goes on
        # The same replacement twisted makes to ignore what follows on a connection it will not reuse.
        channel.dataReceived = lambda data: None
        self.linger = reactor.callLater(LINGER_SECONDS, transport.abortConnection)

    def process(self):
        """Called by twisted with the whole body in; daphne then starts the application."""
        if self.refused:
            return None  # answered already; twisted may still see the body end
        if self.body_is_chunked:
            self.requestHeaders.removeHeader(b"Transfer-Encoding")
            self.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % self.received])
        return super().process()

    def connectionLost(self, reason) -> None:
        if self.linger is not None and self.linger.active():
            self.linger.cancel()
        super().connectionLost(reason)


class HTTPFactory(http_protocol.HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = WebRequest
        return protocol


class WebSocketProtocol(ws_protocol.WebSocketProtocol):
    def serverClose(self, code: int | None = None) -> None:
        if code in PROTOCOL_CLOSE_CODES:
            self.sendCloseFrame(code=code)
        else:
            super().serverClose(code)


class WebSocketFactory(ws_protocol.WebSocketFactory):
    protocol = WebSocketProtocol


class Server(server.Server):
    """daphne's Server with the factories above.

    `Server.run()` builds its two factories inline (`self.http_factory = HTTPFactory(self)`,
    `self.ws_factory = WebSocketFactory(self, server=self.server_name)`), with no hook to choose their
    classes, and then sets their options and starts listening. These properties build ours, with the same
    arguments, in place of what run() assigns; the rest of run() is daphne's, unchanged.
    """

    def __init__(self, *args, action_logger=None, **kwargs) -> None:
        # With LOG_FORMAT=json the access log goes through logging, so every line of the process is JSON.
        super().__init__(*args, action_logger=access_log(action_logger), **kwargs)

    def run(self) -> None:
        freeze_startup_objects()  # the application is imported and Django set up: what is alive now stays
        super().run()

    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, daphnes: http_protocol.HTTPFactory) -> None:
        self._http_factory = HTTPFactory(self)

    @property
    def ws_factory(self) -> WebSocketFactory:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, daphnes: ws_protocol.WebSocketFactory) -> None:
        self._ws_factory = WebSocketFactory(self, server=self.server_name)


class CommandLineInterface(cli.CommandLineInterface):
    """daphne's command line, running `Server` above."""

    server_class = Server


def serve_metrics(address: str) -> None:
    """`serve --metrics-port`: this process's metrics on a port of its own, served by a daemon thread."""
    host, _, port = address.rpartition(":")
    metrics.expose_outbox_backlog(close_connection=True)  # scrapes come on threads Django does not close
    try:
        metrics.start_http_server(int(port), addr=host)
    except OSError as error:
        sys.exit(f"--metrics-port {port}: cannot listen on {host}:{port}: {error}")
    logger.info("metrics at http://%s:%s/metrics", host, port)


if __name__ == "__main__":
    if os.environ.get(metrics.ADDRESS_VARIABLE):
        serve_metrics(os.environ[metrics.ADDRESS_VARIABLE])
    CommandLineInterface.entrypoint()
