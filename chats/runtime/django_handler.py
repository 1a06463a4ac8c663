"""Django's ASGI handler, running each request's middleware and view in one worker thread, handed over once.

Django's own builds the middleware stack for the event loop and switches between the loop and a worker thread
wherever the next piece cannot run the same way. This project's pieces are synchronous (the request id and
WhiteNoise middleware, DRF views, the admin); the others are written for both, and run on the loop calling their
synchronous hooks through a thread. So a request went loop → thread → loop → thread about a dozen times, each a
lock, a wake-up of the event loop and a wait for the GIL (py-spy: a seventh of a busy web process). Here the stack
is built synchronous, as under WSGI, and called through one `sync_to_async`: one hand-off each way. An async
view would still work (Django adapts it), at the price of one hop back to the loop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneThreadASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
