"""The task that unloads idle models when their TTL runs out.

Owns the loop's sleep (until the next idle model's deadline, or a wake-up: a request that
ends sooner than that, a keep_alive, a crash, a reload) and the unloads it carries out, each
decided afresh by ``ttl``'s rule. It decides no TTL (``ttl``) and stops nothing itself: the
pool drains and stops (``PoolEffects.retire``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from corral.supervisor.runtime import ttl, views
from corral.supervisor.runtime.effects import PoolEffects
from corral.supervisor.runtime.ttl import Ttl

log = logging.getLogger("corral")


class TtlLoop:
    """One pool's TTL loop: ``start``, ``wake``, ``stop``."""

    def __init__(self, pool: PoolEffects) -> None:
        self._pool = pool
        self._wake = asyncio.Event()
        self._sleeping_until = -math.inf  # when the loop wakes on its own (-inf: awake)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def wake(self) -> None:
        """Decide again now: something changed that may move a deadline."""
        self._wake.set()

    def wake_for(self, last_used: float, model_ttl: Ttl) -> None:
        """Wake the loop when a model idle since ``last_used`` now expires before the loop
        would wake anyway (a wake per request cost a recomputation and a task each, for
        nothing)."""
        if ttl.wakes_ttl_loop(last_used, model_ttl, self._sleeping_until):
            self._wake.set()

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._closing:
            # Clear before reading the deadline, so a wake-up in between is not lost.
            self._wake.clear()
            deadline = ttl.next_deadline(views.idle_view(self._pool))
            timeout = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
            self._sleeping_until = deadline
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._sleeping_until = -math.inf  # deciding: it reads the pool afresh before sleeping
            try:
                await self._unload_expired()
            except Exception:
                # The loop must outlive any one failure, or nothing would ever unload again.
                log.exception("ttl: unloading failed; will try again")

    async def _unload_expired(self) -> None:
        while True:
            # Decided afresh before each stop: a request may have arrived during the last.
            names = ttl.expired(views.idle_view(self._pool), time.monotonic())
            if not names:
                return
            await self._pool.retire([self._pool.entries[names[0]]], "ttl")
