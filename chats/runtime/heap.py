"""Startup objects are kept out of the garbage collector's full collections in the long-running processes.

A full (generation 2) collection walks every object the collector tracks, and stops the whole process while it
does. A web process starts with ~100,000 of them (Django, DRF, Channels, twisted, the models and URL patterns),
none of which will ever be garbage, and under load a full collection came every few seconds: 50-90 ms each on
a quiet machine, in the web process, the relay and the forwarder alike. Each such pause held up every frame and
post of the moment, and was the p99 of POST -> frame (bench/README.md, "History and causes": garbage
collection pauses).

`gc.freeze()` moves every object alive at that moment to a permanent generation that collections skip, so a
full collection walks only what the process made since: its sockets, its caches, the objects of work in flight.
What is frozen is never collected; a cycle among startup objects that dies later stays in memory, which for
objects made once at startup is a bounded cost.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Call once, when the process has set itself up and before it starts serving."""
    gc.collect()  # the garbage of startup goes now, instead of being frozen with the rest
    gc.freeze()
