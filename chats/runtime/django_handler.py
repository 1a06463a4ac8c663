"""Django's ASGI handler, running each request's middleware and view in one worker thread, handed over once, on
threads that serve request after request.

Django's own builds the middleware stack for the event loop and switches between the loop and a worker thread
wherever the next piece cannot run the same way. This project's pieces are synchronous (the request id and
WhiteNoise middleware, DRF views, the admin); the others are written for both, and run on the loop calling their
synchronous hooks through a thread. So a request went loop → thread → loop → thread about a dozen times, each a
lock, a wake-up of the event loop and a wait for the GIL (py-spy: a seventh of a busy web process). Here the stack
is built synchronous, as under WSGI, and called through one `sync_to_async`: one hand-off each way. An async
view would still work (Django adapts it), at the price of one hop back to the loop.

Django also gives every request a thread of its own (`ThreadSensitiveContext`: its signals, middleware and view
run there, one request per thread, so a view waiting on the database holds up no other), and starts and joins
that thread per request: 9 % of a busy web process's GIL time (py-spy, 32 clients posting). Here each request
still runs alone on its thread, but the thread is taken from those idle and given back afterwards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

IDLE_THREADS = 32  # request threads kept for reuse; a burst beyond them starts (and then stops) more


class RequestThreads:
    """Single-thread executors, one per request in flight, kept for the next requests once idle. Used from the
    event loop only (the handler's `__call__`), so it needs no lock."""

    def __init__(self, keep: int = IDLE_THREADS) -> None:
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []

    def take(self) -> ThreadPoolExecutor:
        return self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        # A view cancelled by a client's disconnect may still be running on it: the next request queues behind it,
        # as it would behind any request on that thread.
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)


class OneThreadASGIHandler(ASGIHandler):
    threads = RequestThreads()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):  # the caller's executor: not shut down on exit
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)
