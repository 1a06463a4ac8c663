"""Every HTTP request gets an id: the caller's `X-Request-ID` if it is sane (at most 64 of [A-Za-z0-9._-]),
else a new uuid4 hex. It is answered in the `X-Request-ID` header, put on every log record of the request
(chats.runtime.logs), and written into the envelopes of the events the request commits, so the relay, the
forwarder and the websocket frames log it too. The request is then logged in one line with it.
"""

from __future__ import annotations

import logging
import time
import uuid

from chats.runtime import logs

logger = logging.getLogger("chats.api.requests")


class RequestIdMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        request_id = logs.sane_request_id(request.headers.get("X-Request-ID")) or uuid.uuid4().hex
        request.request_id = request_id
        token = logs.request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            logger.info(
                "%s %s %d %.1fms", request.method, request.path, response.status_code, duration_ms,
                extra={"method": request.method, "path": request.path, "status": response.status_code,
                       "duration_ms": duration_ms},
            )
            return response
        finally:
            logs.request_id.reset(token)
