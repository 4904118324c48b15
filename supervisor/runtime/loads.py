"""One model's load, carried out: decide, claim, stop what must go, start, learn.

Owns the steps of a load task (``pool`` creates one per model, however many requests await
it): asking ``scheduler.plan_load`` until nothing stands in the way (loads in progress end;
busy models go idle, or the bounded wait ``max_swap_wait`` runs out and they drain), a
refusal when the model can never fit, the claim, the evictions, the child's start, one
more try after an out-of-memory failure, the measurement of a ready child and where it
runs (``offload``; a ``warning`` when not where its config asked), and the load's
events (``loading``, ``progress`` each second, ``ready``, ``load_failed``, and
``load_cancelled``, whose child is stopped). Every decision is the scheduler's; the
evictions are ``pool``'s drains.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from corral.supervisor.errors import StartFailed
from corral.supervisor.pull import library
from corral.supervisor.runtime import checks, scheduler, views
from corral.supervisor.runtime.child.states import StartError
from corral.supervisor.runtime.effects import PoolEffects
from corral.supervisor.runtime.entries import Entry
from corral.supervisor.runtime.memory import devices, learned, offload, placement

log = logging.getLogger("corral")


#: Seconds between two ``progress`` events of one load.
PROGRESS_EVERY = 1.0


async def load(pool: PoolEffects, entry: Entry, reason: str = "request") -> None:
    """One load and its events; see ``_load``."""
    began = time.monotonic()
    pool.events.publish("loading", entry.name, reason=reason)
    progress = asyncio.create_task(_progress(pool, entry, began))
    try:
        await _load(pool, entry)
    except StartFailed as exc:
        pool.events.publish("load_failed", entry.name, error=exc.message)
        raise
    except asyncio.CancelledError:
        pool.events.publish("load_cancelled", entry.name)
        raise
    finally:
        progress.cancel()
    if entry.admitting():
        entry.load_seconds = round(time.monotonic() - began, 3)
        pool.events.publish("ready", entry.name, seconds=entry.load_seconds)


async def _progress(pool: PoolEffects, entry: Entry, began: float) -> None:
    """A ``progress`` event each second of a load: how long so far, the child's last line."""
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        child = entry.child
        last = child.stderr_tail(1) if child is not None and child.state.live else []
        seconds = round(time.monotonic() - began, 1)
        pool.events.publish("progress", entry.name, seconds=seconds, line=last[0] if last else "")


async def _load(pool: PoolEffects, entry: Entry) -> None:
    """Wait for what stands in the way, claim, stop what must go, start the child."""
    while entry.draining:  # an unload or swap of this very model finishes first
        await entry.drained.wait()
    plan = await _decide(pool, entry)
    if pool.entries.get(entry.name) is not entry:
        return  # a reload replaced it meanwhile: its waiters follow the name
    entry.claimed = True  # from here on, other loads see this one and wait for it
    try:
        await pool.retire([pool.by_ref(r) for r in plan.evict], "swap")
        try:
            await _start(pool, entry)
        except StartError as exc:
            victims = _after_out_of_memory(pool, entry, exc)
            if victims is None:
                raise _failed(entry, exc) from exc
            names = sorted({v.name for v in victims})
            log.warning(
                "%s: out of memory while loading; stopping %s, then once more", entry.name, names
            )
            await pool.retire(victims, "out of memory")
            try:
                await _start(pool, entry)
            except StartError as again:
                raise _failed(entry, again) from again
        entry.last_used = time.monotonic()
        entry.keep_alive = None
        if entry.child is not None:
            _ran(pool, entry, entry.child.buffer_lines())
    finally:
        entry.claimed = False
        pool.wake()


async def _decide(pool: PoolEffects, entry: Entry) -> scheduler.LoadPlan:
    """Ask the scheduler until the plan is to evict and start (or a refusal, raised)."""
    waiting_since = time.monotonic()
    swap_now = False
    while True:
        plan = scheduler.plan_load(
            entry.name,
            entry.key,
            views.residents(pool),
            pool.placement,
            pool.budget(entry),
            swap_now,
        )
        if plan.refuse is not None:
            entry.failed_at = time.monotonic()
            log.warning("%s", plan.refuse)
            raise StartFailed(plan.refuse)
        if plan.wait_for:
            loads = [pool.by_ref(r).load_task for r in plan.wait_for]
            await asyncio.wait([t for t in loads if t is not None])
        elif plan.busy:
            busy = [pool.by_ref(r) for r in plan.busy]
            now = time.monotonic()
            pending = sum(e.in_flight + e.waiting for e in busy)
            turn = placement.take_turn(now, waiting_since, pending, pool.config.max_swap_wait)
            if turn.swap:
                swap_now = True  # the wait ran out: they drain (never cut off), then stop
                continue
            await _any_idle(busy, until=turn.recheck_at)
        else:
            return plan


async def _any_idle(entries: list[Entry], until: float) -> None:
    """Until one of ``entries`` has nothing in flight, or ``until`` (monotonic seconds)."""
    waits = [asyncio.create_task(e.idle.wait()) for e in entries]
    try:
        left = max(until - time.monotonic(), 0.0)
        await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _start(pool: PoolEffects, entry: Entry) -> None:
    child = entry.child
    if child is None or not child.state.live:
        model = entry.config  # auto_pull: a `source` whose file is missing comes first
        if pool.config.auto_pull and model.path is not None and not model.path.exists():
            model = await library.present(model, log.info)
            await checks.log_warnings(pool.config, [model], gpu=False)  # what was pulled
        child = pool.spawn(model)
        for sibling in pool.entries.values():  # never a replaced one: it retires
            if sibling.key == entry.key:
                sibling.child = child
                sibling.runs_on = None  # known again once this child is ready
    try:
        await child.start()
    except asyncio.CancelledError:
        # Nobody waits for this load any more: a child left loading would hold memory.
        await asyncio.shield(child.stop("cancelled"))
        raise


def _ran(pool: PoolEffects, entry: Entry, lines: list[str]) -> None:
    """Learn what the load took (budgets in force), and where it runs; a ``warning`` (log
    and event) when that is not what its config asked for."""
    if pool.footprints.in_force:
        pool.footprints.learn(entry.config, lines)
    model = entry.config
    if offload.watched(model, bool(pool.config.devices)):
        runs_on = offload.read(model, lines, pool.footprints.gpus)
    else:  # no GPU in play: llama-server runs on the CPU and logs nothing of it
        runs_on = offload.RunsOn([devices.CPU]) if model.cmd is None else None
    for sibling in pool.sharing(entry):
        sibling.runs_on = runs_on
    if runs_on is not None and runs_on.warning is not None:
        log.warning("%s", runs_on.warning)
        pool.events.publish("warning", entry.name, text=runs_on.warning)


def _after_out_of_memory(pool: PoolEffects, entry: Entry, exc: StartError) -> list[Entry] | None:
    """The idle models to stop before one more try, when the load failed for memory."""
    # The kernel's OOM killer leaves no line in the log: its SIGKILL is the only sign.
    if not (learned.out_of_memory(exc.stderr_tail) or exc.exit_code == -signal.SIGKILL):
        return None
    needed = pool.footprints.need(entry.config) or pool.footprints.budgets
    residents = views.residents(pool)
    victims = scheduler.plan_retry(entry.name, entry.key, residents, pool.placement, needed)
    return None if victims is None else [pool.by_ref(r) for r in victims]


def _failed(entry: Entry, exc: StartError) -> StartFailed:
    entry.failed_at = time.monotonic()
    return StartFailed(str(exc))
