"""The running set of models: carrying out the scheduler's decisions on one event loop.

Owns each model's entry (its child, in-flight count, queue, last use), admission (concurrency
limit and bounded queue), starting on demand with one start per model however many wait,
swapping (drain the running model's requests, then stop it), TTL unloading, explicit unloads,
reload and shutdown. It does not decide who may run (``scheduler``), run processes itself
(``process``) or speak HTTP (``routes_*``).

Everything here runs on one asyncio loop, so entries need no locks of their own; one pool-wide
lock orders starts and swaps so that two loads never race to evict each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from corral.generator.problems import ConfigError
from corral.generator.settings import Config, ModelConfig
from corral.supervisor.errors import Overloaded, StartFailed, UnknownModel
from corral.supervisor.runtime import command, scheduler
from corral.supervisor.runtime.entries import Entry, Lease
from corral.supervisor.runtime.process import ChildProcess
from corral.supervisor.runtime.states import ProcessState, StartError

log = logging.getLogger("corral")


class Pool:
    """Every configured model's entry, and the effects of the scheduler's decisions."""

    def __init__(self, config: Config, owner: str) -> None:
        self.owner = owner
        self.config = config
        self.entries: dict[str, Entry] = {m.name: Entry(m) for m in config.models}
        self.placement = scheduler.Placement.from_config(config)
        self.llama_server: str | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._ttl_task: asyncio.Task[None] | None = None
        self._preloads: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lookup ---------------------------------------------------------------------------

    def resolve(self, name: object) -> Entry:
        """The entry a request's ``model`` (a name or an alias) routes to, or a 404."""
        if isinstance(name, str):
            model = self.config.model(name)
            if model is not None:
                return self.entries[model.name]
        listed = [m.name for m in self.config.models if not m.unlisted]
        raise UnknownModel(name, listed)

    def ttl(self, entry: Entry) -> float:
        if entry.keep_alive is not None:
            return entry.keep_alive
        return float(entry.config.ttl if entry.config.ttl is not None else self.config.default_ttl)

    # -- requests -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, name: object) -> AsyncIterator[Lease]:
        """Hold a place on a ready child for one request; start or swap it in if needed."""
        entry = self.resolve(name)
        if entry.waiting + entry.in_flight >= entry.config.concurrency + entry.config.max_queue:
            raise Overloaded(entry.name, entry.waiting)
        entry = await self._admit(name, entry, time.monotonic())
        child = entry.child
        assert child is not None
        entry.in_flight += 1
        entry.idle.clear()
        try:
            yield Lease(entry.config, child.base_url)
        finally:
            entry.gate.release()
            entry.in_flight -= 1
            entry.last_used = time.monotonic()
            if entry.in_flight == 0:
                entry.idle.set()
                self._wake.set()

    async def _admit(self, name: object, entry: Entry, arrived: float) -> Entry:
        """Wait until ``entry``'s child is ready and this request holds a place on it."""
        while True:
            entry.waiting += 1
            try:
                if await self._ensure_ready(entry, arrived):
                    await entry.gate.acquire()
                    if entry.admitting() and self.entries.get(entry.name) is entry:
                        return entry
                    # The child went away while we queued (crash, TTL, reload): again.
                    entry.gate.release()
            finally:
                entry.waiting -= 1
            # A reload may have replaced the entry: follow the name (a 404 if it is gone).
            entry = self.resolve(name)

    async def _ensure_ready(self, entry: Entry, arrived: float) -> bool:
        """Wait until ``entry`` is ready; False when a reload replaced it meanwhile."""
        while not entry.admitting():
            task = entry.start_task
            if task is not None and not task.done():
                await asyncio.shield(task)
                continue
            async with self._lock:
                if self.entries.get(entry.name) is not entry:
                    # Starting a replaced entry would leave a child nobody tracks.
                    return False
                if entry.admitting():
                    return True
                task = entry.start_task
                if task is not None and task.done() and entry.failed_at >= arrived:
                    # This request waited for the attempt that failed: it shares the failure
                    # instead of starting another; the next request tries again.
                    task.result()
                if task is None or task.done():
                    task = entry.start_task = asyncio.create_task(self._load(entry))
                # Holding the lock through the load keeps another model from evicting it.
                await asyncio.shield(task)
        return True

    async def _load(self, entry: Entry) -> None:
        # Presets of the same file run on this entry's child: never evict them for it.
        others = [s.name for s in self.entries.values() if s.running() and s.key != entry.key]
        for other in scheduler.to_evict(entry.name, others, self.placement):
            await self._drain_and_stop(self.entries[other], "swap")
        if entry.child is None or entry.child.state in (ProcessState.FAILED, ProcessState.STOPPED):
            child = self._new_child(entry.config)
            for sibling in self._siblings(entry):
                sibling.child = child
        assert entry.child is not None
        try:
            await entry.child.start()
        except StartError as exc:
            entry.failed_at = time.monotonic()
            raise StartFailed(str(exc)) from exc
        entry.last_used = time.monotonic()
        entry.keep_alive = None
        self._wake.set()

    def _new_child(self, model: ModelConfig) -> ChildProcess:
        if model.cmd is None and self.llama_server is None:
            try:
                self.llama_server = command.resolve_llama_server(self.config.llama_server)
            except ConfigError as exc:
                raise StartFailed(f"model {model.name!r} cannot start: {exc}") from exc
        binary = self.llama_server or ""
        env = command.build_env(model, os.environ, self.owner)
        return ChildProcess(
            model.name,
            lambda port: command.build_argv(model, binary, port),
            env,
            self.config.health_timeout,
            on_exit=self._on_exit,
            logger=log,
        )

    def _on_exit(self, child: ChildProcess, code: int) -> None:
        # A crash: requests in flight see the broken connection; the next one restarts it.
        for entry in self.entries.values():
            if entry.child is child:
                entry.failed_at = -math.inf
                self._wake.set()

    def _siblings(self, entry: Entry) -> list[Entry]:
        """Every entry that runs the same command as ``entry`` (itself included)."""
        return [s for s in self.entries.values() if s.key == entry.key]

    def _sharing(self, entry: Entry) -> list[Entry]:
        """The entries whose requests go to ``entry``'s child right now."""
        if entry.child is None:
            return [entry]
        return [s for s in self.entries.values() if s.child is entry.child]

    def _latest(self, entry: Entry) -> Entry:
        """Of the entries sharing a child, the one used last: its ttl/keep_alive governs."""
        return max(self._sharing(entry), key=lambda s: s.last_used)

    async def _drain_and_stop(self, entry: Entry, reason: str) -> None:
        """Let the requests in flight finish (never cut a generation short), then stop."""
        sharing = self._sharing(entry)
        for s in sharing:
            s.draining = True
        try:
            for s in sharing:
                await s.idle.wait()
            if entry.child is not None:
                await entry.child.stop(reason)
        finally:
            for s in sharing:
                s.draining = False
                s.keep_alive = None

    # -- unloading ------------------------------------------------------------------------

    async def unload(self, name: str | None = None, reason: str = "unload") -> list[str]:
        """Stop one model (or all) once its requests finish; returns what was stopped."""
        entries = [self.resolve(name)] if name is not None else list(self.entries.values())
        stopped = []
        async with self._lock:
            for entry in entries:
                if entry.running():
                    await self._drain_and_stop(entry, reason)
                    stopped.append(entry.name)
        return stopped

    def set_keep_alive(self, entry: Entry, seconds: float) -> None:
        """A client's keep_alive: 0 unloads once idle, negative never unloads."""
        entry.keep_alive = math.inf if seconds < 0 else seconds
        self._wake.set()

    def expires_at(self, entry: Entry) -> float | None:
        """Wall-clock time the model unloads if nothing else arrives; None: never or not loaded."""
        latest = self._latest(entry)
        ttl = self.ttl(latest)
        if not entry.running() or ttl <= 0 or math.isinf(ttl):
            return None
        busy = any(s.in_flight for s in self._sharing(entry))
        remaining = max(0.0, latest.last_used + ttl - time.monotonic())
        return time.time() + (ttl if busy else remaining)

    def _idle_view(self) -> list[scheduler.Idle]:
        """One entry per running child, named after the entry that used it last."""
        view = {}
        for entry in self.entries.values():
            if entry.child is None or entry.state is not ProcessState.READY or entry.draining:
                continue
            sharing = self._sharing(entry)
            latest = max(sharing, key=lambda s: s.last_used)
            busy = sum(s.in_flight + s.waiting for s in sharing)
            view[id(entry.child)] = scheduler.Idle(
                latest.name, busy, latest.last_used, self._ttl_for_rule(latest)
            )
        return list(view.values())

    def _ttl_for_rule(self, entry: Entry) -> float:
        ttl = self.ttl(entry)
        if entry.keep_alive == 0:
            return 1e-9  # keep_alive 0: unload as soon as the last request ends
        return 0.0 if math.isinf(ttl) else ttl

    async def _ttl_loop(self) -> None:
        while not self._closing:
            # Clear before reading the deadline, so a wake-up in between is not lost.
            self._wake.clear()
            deadline = scheduler.next_deadline(self._idle_view())
            timeout = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            try:
                await self._unload_expired()
            except Exception:
                # The loop must outlive any one failure, or nothing would ever unload again.
                log.exception("ttl: unloading failed; will try again")

    async def _unload_expired(self) -> None:
        for name in scheduler.expired(self._idle_view(), time.monotonic()):
            entry = self.entries[name]
            async with self._lock:
                # Re-check under the lock: a request may have arrived while we waited.
                if name in scheduler.expired(self._idle_view(), time.monotonic()):
                    sharing = self._sharing(entry)
                    if entry.child is not None:
                        await entry.child.stop("ttl")
                    for s in sharing:
                        s.keep_alive = None

    # -- lifecycle ------------------------------------------------------------------------

    def start_background(self) -> None:
        self._ttl_task = asyncio.create_task(self._ttl_loop())
        self._preload_all()

    def _preload_all(self) -> None:
        for entry in self.entries.values():
            if entry.config.preload and not entry.running():
                task = asyncio.create_task(self._preload(entry))
                self._preloads.add(task)
                task.add_done_callback(self._preloads.discard)

    async def _preload(self, entry: Entry) -> None:
        try:
            await self._ensure_ready(entry, time.monotonic())
        except StartFailed as exc:
            log.error("preload %s failed: %s", entry.name, exc.message)

    async def reload(self, config: Config) -> None:
        """Apply a new config; models whose settings did not change keep running."""
        async with self._lock:
            old = self.entries
            new: dict[str, Entry] = {}
            for model in config.models:
                entry = old.get(model.name)
                if (
                    entry is not None
                    and entry.config == model
                    and config_runs_same(self.config, config)
                ):
                    new[model.name] = entry
                else:
                    new[model.name] = Entry(model)
            in_use = {id(s.child) for s in new.values() if s.child is not None}
            for name, entry in old.items():
                # A child still used by a kept preset stays; the changed entry lets go of it.
                if new.get(name) is not entry and entry.running() and id(entry.child) not in in_use:
                    await self._drain_and_stop(entry, "reload")
            for entry in new.values():
                if entry.child is None:
                    entry.child = next(
                        (s.child for s in new.values() if s.key == entry.key and s.running()),
                        None,
                    )
            self.entries = new
            self.config = config
            self.placement = scheduler.Placement.from_config(config)
            self.llama_server = None
        kept = [n for n in new if old.get(n) is new[n] and new[n].running()]
        log.info("reloaded config: %d models, kept running: %s", len(new), kept or "none")
        self._preload_all()
        self._wake.set()

    async def shutdown(self) -> None:
        self._closing = True
        self._wake.set()
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ttl_task
        await asyncio.gather(*(child.stop("shutdown") for child in self._children()))

    def kill_all_now(self) -> None:
        """Last resort on the way out: SIGKILL every child's group without waiting."""
        for child in self._children():
            child.kill_group_now()

    def _children(self) -> list[ChildProcess]:
        unique = {id(s.child): s.child for s in self.entries.values() if s.child is not None}
        return list(unique.values())

    # -- reporting ------------------------------------------------------------------------

    def describe(self, entry: Entry) -> dict[str, Any]:
        child = entry.child
        return {
            "model": entry.name,
            "state": entry.state.public,
            "pid": child.pid if child is not None and entry.running() else None,
            "port": child.port if child is not None and entry.running() else None,
            "in_flight": entry.in_flight,
            "queued": entry.waiting,
            # -1: kept loaded for good (JSON has no infinity).
            "ttl": -1 if math.isinf(self.ttl(entry)) else self.ttl(entry),
            "expires_at": self.expires_at(entry),
        }

    def running_status(self) -> list[dict[str, Any]]:
        return [self.describe(s) for s in self.entries.values() if s.running()]


def config_runs_same(old: Config, new: Config) -> bool:
    """Whether global settings that shape every child (binary, timeouts) are unchanged."""
    keys: Mapping[str, Any] = {"llama_server": None, "health_timeout": None}
    return all(getattr(old, k) == getattr(new, k) for k in keys)
