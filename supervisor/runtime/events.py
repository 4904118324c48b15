"""What happens to the models, as events: loads (with progress), ready, unloads with their
reason, crashes, queue changes.

Owns the event vocabulary (``KINDS``), the bus that carries them to whoever follows
(``/events``, the status page, ``corral status --watch``) and to the listeners that count
them (``metrics``; queue changes go to followers only, and cost nothing while nobody
follows), and the short history a new follower starts from. Publishing is a dict and a put
per follower, so the pool can publish on its hot path; a follower that
falls ``QUEUE`` events behind loses the oldest (it is told, with a ``lagged`` event)
rather than holding memory or slowing anyone down. It decides nothing and reads no pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

#: Every kind of event, and what it carries besides ``model``.
KINDS = {
    "loading": "a load began (reason: request or preload)",
    "progress": "a load goes on: seconds so far, and the child's last log line",
    "ready": "a load ended: seconds it took",
    "load_failed": "a load ended without a ready child: why",
    "load_cancelled": "the only request waiting for a load hung up: the load stopped",
    "unloaded": "a child stopped: why (ttl, swap, unload, reload, out of memory, shutdown)",
    "crashed": "a ready child exited on its own: its exit code",
    "warning": "a load ran otherwise than its config asked (the CPU for the GPU): text",
    "queue": "requests in flight or waiting changed: in_flight, queued",
    "lagged": "this follower fell behind and lost the oldest events",
    "reloaded": "the config was read again (SIGHUP, or a pull added a model); model is empty",
}
#: Events a new follower gets first (queue changes are not kept: they go stale at once).
HISTORY = 100
#: Events a follower may fall behind before it loses the oldest.
QUEUE = 1000

Event = dict[str, Any]
Listener = Callable[[Event], None]


class EventBus:
    """Publishes events to followers (async queues) and listeners (called at once)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._followers: set[asyncio.Queue[Event]] = set()
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, kind: str, model: str, **fields: Any) -> None:
        assert kind in KINDS, kind
        if kind == "queue" and not self._followers:
            return  # four per request: only a follower (a status page) reads them
        event: Event = {"id": next(self._ids), "time": time.time(), "kind": kind, "model": model}
        event.update(fields)
        if kind != "queue":
            self._history.append(event)
            for listener in self._listeners:
                listener(event)
        for queue in self._followers:
            if queue.full():
                # The two oldest go, for a note that some went and for this event.
                queue.get_nowait()
                queue.get_nowait()
                queue.put_nowait({"id": event["id"], "kind": "lagged", "model": ""})
            queue.put_nowait(event)

    def history(self) -> list[Event]:
        return list(self._history)

    @contextlib.asynccontextmanager
    async def follow(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of every event from now on, until the block ends."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE)
        self._followers.add(queue)
        try:
            yield queue
        finally:
            self._followers.discard(queue)

    @property
    def followers(self) -> int:
        return len(self._followers)
