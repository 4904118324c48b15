"""The running set of models: carrying out the scheduler's decisions on one event loop.

Owns each model's entry (its child, in-flight count, queue, last use) and the effects of
every decision: leasing a place on a ready child, one load per model however many wait
(its steps: ``loads``), drains (the running model's requests finish, then it stops), TTL
unloading (its loop: ``ttl_loop``), explicit unloads, reload and shutdown. It decides
nothing itself (``scheduler``, ``ttl``), runs no process (``launch`` makes children, through
an injectable ``ChildFactory``), keeps no memory figure (``footprints``), reads nothing out
(``views``) and speaks no HTTP (``api``).
What happens is published on ``events`` (loads, unloads, crashes, queue changes).

No lock: everything runs on one asyncio loop, and each decision is read and recorded with no
``await`` in between (a load's claim, a drain's mark), so no other task can see a half-made
one. Waits (a drain, a stop, a load) happen after the decision, under no lock, so one slow
model never delays an unrelated one. A load is a task of its own that owns its decision
until it ends: a waiting request that hangs up cancels only its own wait, unless it was the
only one waiting for a load that a request began: then the load stops too (its child with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config
from corral.supervisor.errors import Overloaded, StartFailed, UnknownModel
from corral.supervisor.runtime import checks, loads, scheduler, ttl
from corral.supervisor.runtime.child.launch import Launcher
from corral.supervisor.runtime.child.states import Child, ChildFactory
from corral.supervisor.runtime.entries import Entry, Lease, reloaded
from corral.supervisor.runtime.events import EventBus
from corral.supervisor.runtime.footprints import Footprints
from corral.supervisor.runtime.memory import devices
from corral.supervisor.runtime.ttl import Ttl
from corral.supervisor.runtime.ttl_loop import TtlLoop

log = logging.getLogger("corral")


class Pool:
    """Every configured model's entry, and the effects of the scheduler's decisions."""

    def __init__(
        self,
        config: Config,
        owner: str,
        spawn: ChildFactory | None = None,
        detected: Mapping[str, int] | None = None,  # memory per device; None: detect now
    ) -> None:
        self.owner = owner
        self.config = config
        self.entries: dict[str, Entry] = {m.name: Entry(m) for m in config.models}
        self._detected = devices.detect() if detected is None else dict(detected)
        self.footprints = Footprints(config, self._detected)
        self.placement = scheduler.Placement.from_config(config, self.footprints.in_force)
        self._spawn: ChildFactory = spawn or Launcher(config, owner)
        self._retiring: set[Entry] = set()  # replaced by a reload, still draining
        self._ttl_loop = TtlLoop(self)
        self._preloads: set[asyncio.Task[None]] = set()  # and warnings being logged
        self._start_checks: asyncio.Task[None] | None = None
        self.events = EventBus()

    def resolve(self, name: object) -> Entry:
        """The entry a request's ``model`` (a name or an alias) routes to, or a 404."""
        if isinstance(name, str):
            model = self.config.model(name)
            if model is not None:
                return self.entries[model.name]
        listed = [m.name for m in self.config.models if not m.unlisted]
        raise UnknownModel(name, listed)

    def ttl(self, entry: Entry) -> Ttl:
        if entry.keep_alive is not None:
            return entry.keep_alive
        return ttl.config_ttl(entry.config.ttl, self.config.default_ttl)

    # -- requests -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, name: object) -> AsyncIterator[Lease]:
        """Hold a place on a ready child for one request; start or swap it in if needed."""
        entry = self.resolve(name)
        model = entry.config
        if not scheduler.admits(entry.in_flight, entry.waiting, model.concurrency, model.max_queue):
            raise Overloaded(entry.name, entry.waiting)
        entry = await self._admit(name, entry, time.monotonic())
        assert entry.child is not None
        entry.in_flight += 1
        entry.idle.clear()
        self._queue_changed(entry)
        try:
            yield Lease(entry.config, entry.child.base_url, entry.child.api_key, entry.answers_as())
        finally:
            entry.gate.release()
            entry.in_flight -= 1
            entry.last_used = time.monotonic()
            if entry.in_flight == 0:
                entry.idle.set()
                self._ttl_loop.wake_for(entry.last_used, self.ttl(entry))
            self._queue_changed(entry)

    def _queue_changed(self, entry: Entry) -> None:
        self.events.publish("queue", entry.name, in_flight=entry.in_flight, queued=entry.waiting)

    async def _admit(self, name: object, entry: Entry, arrived: float) -> Entry:
        """Wait until ``entry``'s child is ready and this request holds a place on it."""
        while True:
            entry.waiting += 1
            self._queue_changed(entry)
            try:
                if await self.ensure_ready(entry, arrived):
                    await entry.gate.acquire()
                    if entry.admitting() and self._tracked(entry):
                        return entry
                    # The child went away while we queued (crash, TTL, swap, reload): again.
                    entry.gate.release()
            finally:
                entry.waiting -= 1
                self._queue_changed(entry)
            # A reload may have replaced the entry: follow the name (a 404 if it is gone).
            entry = self.resolve(name)

    async def ensure_ready(self, entry: Entry, arrived: float, reason: str = "request") -> bool:
        """Wait until ``entry`` is ready; False when a reload replaced it meanwhile.

        ``reason``: who asked (``request`` or ``preload``), as the ``loading`` event says.
        """
        while not entry.admitting():
            if self.entries.get(entry.name) is not entry:
                return False  # starting a replaced entry would leave a child nobody tracks
            task = entry.load_task
            if task is None or task.done():
                if task is not None and scheduler.shares_failure(entry.failed_at, arrived):
                    with contextlib.suppress(asyncio.CancelledError):
                        task.result()  # the load this request waited for failed: so does it
                entry.preloading = reason == "preload"
                task = entry.load_task = asyncio.create_task(loads.load(self, entry, reason))
            try:
                # Shielded: a request that hangs up stops waiting; the load goes on for the
                # rest, unless nobody else waits for it and no preload asked for it.
                await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is None or current.cancelling():  # this request hung up
                    if entry.waiting <= 1 and not entry.preloading and not task.done():
                        task.cancel()
                    raise
                # The load was cancelled under this request: its only other waiter hung up
                # while it stopped (a child's stop takes a while), and this one came in
                # meanwhile. It still wants the model: the loop starts a new load.
                continue
        return True

    def budget(self, entry: Entry) -> scheduler.Budget | None:
        """The memory side of ``entry``'s load; None when no budget is in force."""
        if not self.footprints.in_force:
            return None
        return scheduler.Budget(self.footprints.need(entry.config), self.footprints.budgets)

    def spawn(self, model: ModelConfig) -> Child:
        return self._spawn(model, self._on_exit)

    def wake(self) -> None:
        self._ttl_loop.wake()

    def _tracked(self, entry: Entry) -> bool:
        """Current, or replaced by a reload but still serving the requests it has."""
        return self.entries.get(entry.name) is entry or entry in self._retiring

    def every_entry(self) -> list[Entry]:
        """The current entries, and those a reload replaced that still drain."""
        return [*self.entries.values(), *self._retiring]

    def by_ref(self, resident: scheduler.Resident) -> Entry:
        return next(e for e in self.every_entry() if id(e) == resident.ref)

    def _on_exit(self, child: Child, code: int) -> None:
        # A crash: requests in flight see the broken connection; the next one restarts it.
        for entry in self.every_entry():
            if entry.child is child:
                entry.failed_at = -math.inf
                self.events.publish("crashed", entry.name, code=code)
        self._ttl_loop.wake()

    def sharing(self, entry: Entry) -> list[Entry]:
        """The entries whose requests go to ``entry``'s child right now."""
        if entry.child is None:
            return [entry]
        return [e for e in self.every_entry() if e.child is entry.child]

    async def retire(self, entries: Iterable[Entry], reason: str) -> None:
        """Let a load in progress end and the requests in flight finish (never cut a
        generation short), then stop. A swap's victims are never loading (``plan_load``
        waits for those), so its drain is marked before the first ``await``: from the
        decision on, no new request is admitted to them.
        """
        loads = [e.load_task for e in entries if e.claimed and e.load_task is not None]
        if loads:
            await asyncio.wait(loads)  # the load owns its decision until it ends
        sharing = {id(s): s for e in entries for s in self.sharing(e)}.values()
        for s in sharing:
            s.draining = True
            s.drained.clear()
        try:
            for s in sharing:
                await s.idle.wait()
            children = {id(s.child): s.child for s in sharing if s.child is not None}
            await asyncio.gather(*(c.stop(reason) for c in children.values()))
            for s in sharing:
                if s.child is not None:
                    self.events.publish("unloaded", s.name, reason=reason)
        finally:
            for s in sharing:
                s.draining = False
                s.drained.set()
                s.keep_alive = None

    async def unload(self, name: str | None = None, reason: str = "unload") -> list[str]:
        """Stop one model (or all) once its requests finish; returns what was stopped."""
        chosen = [self.resolve(name)] if name is not None else list(self.entries.values())
        running = [e for e in chosen if e.running()]
        await self.retire(running, reason)
        return [e.name for e in running]

    def set_keep_alive(self, entry: Entry, seconds: float) -> None:
        """A client's keep_alive (Ollama's meaning: 0 unloads once idle, negative never)."""
        entry.keep_alive = ttl.keep_alive_ttl(seconds)
        self._ttl_loop.wake()

    def start_background(self) -> None:
        self._ttl_loop.start()
        self._preload_all()
        self._start_checks = asyncio.create_task(self._warn_after_first_loads())

    async def _warn_after_first_loads(self) -> None:
        """The start's warnings once the loads begun meanwhile end: ``--list-devices``
        competed with a socket-activated start's first load (+120 ms to its answer)."""
        await asyncio.sleep(checks.AFTER_START_S)
        loading = [e.load_task for e in self.entries.values() if e.load_task is not None]
        await asyncio.wait(loading) if loading else None
        real = isinstance(self._spawn, Launcher)  # a real llama-server: its backends too
        await checks.log_warnings(self.config, self.config.models, gpu=real)

    def _preload_all(self) -> None:
        for entry in self.entries.values():
            if entry.config.preload and not entry.running():
                self._in_background(self._preload(entry))

    def _in_background(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._preloads.add(task)  # kept until it ends: the loop holds only a weak reference
        task.add_done_callback(self._preloads.discard)

    async def _preload(self, entry: Entry) -> None:
        try:
            await self.ensure_ready(entry, time.monotonic(), "preload")
        except StartFailed as exc:
            log.error("preload %s failed: %s", entry.name, exc.message)

    async def reload(self, config: Config, plan: scheduler.ReloadPlan) -> None:
        """Apply a new config at once; models the plan keeps go on running, and the children
        of the others stop once their requests finish (returns then)."""
        old = self.entries
        new, retiring = reloaded(old, config.models, plan.keep)
        self.entries, self.config = new, config
        self.footprints = Footprints(config, self._detected)
        self.placement = scheduler.Placement.from_config(config, self.footprints.in_force)
        if isinstance(self._spawn, Launcher):  # the binary or health timeout may change
            self._spawn = Launcher(config, self.owner)
        self._retiring.update(retiring)
        self._preload_all()
        changed = [m for m in config.models if m.name not in plan.keep]
        self._in_background(checks.log_warnings(config, changed, gpu=False))
        self._ttl_loop.wake()
        try:
            await self.retire(retiring, "reload")
        finally:
            self._retiring.difference_update(retiring)
        kept = [n for n in new if old.get(n) is new[n] and new[n].running()]
        log.info("reloaded config: %d models, kept running: %s", len(new), kept or "none")

    async def shutdown(self) -> None:
        if self._start_checks is not None:  # still waiting for the first loads
            self._start_checks.cancel()
        await self._ttl_loop.stop()
        await asyncio.gather(*(child.stop("shutdown") for child in self._children()))

    def kill_all_now(self) -> None:
        """Last resort on the way out: SIGKILL every child's group without waiting."""
        for child in self._children():
            child.kill_group_now()

    def _children(self) -> list[Child]:
        unique = {id(e.child): e.child for e in self.every_entry() if e.child is not None}
        return list(unique.values())
