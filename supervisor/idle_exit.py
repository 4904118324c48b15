"""Exiting when idle (``idle_exit``): the watch, and the one call that stops the server.

Owns the task that sleeps until ``ttl.exit_deadline`` (woken when the last connection
closes, and when a child stops, crashes or fails to load), reads the service afresh, and
once ``ttl.exits`` says so, stops listening and asks the server to stop: the lifespan then
stops the pool, and corral exits 0. It decides nothing (``ttl``), counts no connection
(``http.connections``) and no child (``runtime.views``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from corral.supervisor.http.connections import Shared
from corral.supervisor.runtime import ttl, views
from corral.supervisor.runtime.events import Event
from corral.supervisor.runtime.pool import Pool
from corral.supervisor.runtime.ttl import NEVER, Ttl

log = logging.getLogger("corral")

#: Events after which a child may be gone: the rule is read again.
_ENDS = frozenset({"unloaded", "crashed", "load_failed", "load_cancelled"})


class IdleExit:
    """Calls ``stop`` once nothing has run and nobody has connected for ``after`` seconds."""

    def __init__(
        self,
        after: Callable[[], Ttl],
        pool: Pool,
        connections: Shared,
        stop: Callable[[], None],
    ) -> None:
        #: Read at each decision: a reload's new idle_exit applies from the next one.
        self.after = after
        self._pool = pool
        self._connections = connections
        self._stop = stop
        self._wake = asyncio.Event()
        #: When the rule last saw the last child go (None: one is there now).
        self._children_gone: float | None = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # Quiet from the start of serving, not of the process: a slow start must not use
        # up idle_exit before the connection that started corral is even accepted.
        self._connections.quiet_since = self._children_gone = time.monotonic()
        self._connections.on_quiet = self._wake.set
        self._pool.events.listen(self._on_event)
        self._task = asyncio.create_task(self._run())

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _on_event(self, event: Event) -> None:
        if event["kind"] in _ENDS:
            self._wake.set()

    def activity(self) -> ttl.Activity:
        # Read whenever one may have gone: a child's end wakes the task (events), so the
        # stamp is the moment it went.
        children = views.children(self._pool)
        now = time.monotonic()
        if children:
            self._children_gone = None
        elif self._children_gone is None:
            self._children_gone = now
        gone = now if self._children_gone is None else self._children_gone
        quiet = max(self._connections.quiet_since, gone)
        return ttl.Activity(children, self._connections.open, quiet)

    async def _run(self) -> None:
        while True:
            # Cleared before reading, so a wake-up in between is not lost.
            self._wake.clear()
            deadline = ttl.exit_deadline(self.activity(), self.after())
            timeout = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            # Decided and carried out with no await in between: no request slips in.
            after = self.after()
            if ttl.exits(self.activity(), after, time.monotonic()):
                assert after is not NEVER  # exits() is never true then
                log.info(
                    "idle for %g s: no model loaded, no connection (idle_exit); exiting",
                    after,
                )
                self._stop()
                return
