"""The pool read for others: the scheduler's inputs, and what the service shows of each model.

Owns the views taken of ``pool``'s entries: the residents a load decides against and the
idle children the TTL rule reads (``scheduler``'s inputs), and the figures that
``/running``, ``/status``, ``/v1/models`` and ``/api/ps`` report, where "never unloads"
reads as ``null`` (``ttl``, ``expires_at``), each model's memory (``memory``) and where it
runs (``runs_on``, with a ``warning`` when not where its config asked). It
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from corral.supervisor.runtime import scheduler, ttl
from corral.supervisor.runtime.effects import PoolView
from corral.supervisor.runtime.entries import Entry
from corral.supervisor.runtime.ttl import NEVER


def residents(pool: PoolView) -> list[scheduler.Resident]:
    """Every child that holds memory or is about to: live ones, and claimed loads.

    An entry a reload replaced gets a key of its own: its child is on the way out, never a
    preset's to share, so a load of the same file waits for it to stop.
    """
    return [
        scheduler.Resident(
            id(e),
            e.name,
            _key(pool, e),
            loading=e.claimed,
            memory=pool.footprints.need(e.config),
            pending=e.in_flight + e.waiting,
            last_used=e.last_used,
        )
        for e in pool.every_entry()
        if e.claimed or (e.child is not None and e.child.state.live)
    ]


def _key(pool: PoolView, entry: Entry) -> Hashable:
    return entry.key if pool.entries.get(entry.name) is entry else ("replaced", id(entry))


def idle_view(pool: PoolView) -> list[ttl.Idle]:
    """One item per ready child, named after the entry that used it last (whose ttl counts)."""
    view = {}
    for entry in pool.entries.values():
        if entry.child is None or not entry.admitting():
            continue
        sharing = pool.sharing(entry)
        latest = max(sharing, key=lambda e: e.last_used)
        busy = sum(e.in_flight + e.waiting for e in sharing)
        view[id(entry.child)] = ttl.Idle(latest.name, busy, latest.last_used, pool.ttl(latest))
    return list(view.values())


def expires_at(pool: PoolView, entry: Entry) -> float | None:
    """Wall-clock time the model unloads if nothing else arrives; None: never or not loaded."""
    sharing = pool.sharing(entry)
    latest = max(sharing, key=lambda e: e.last_used)
    ttl = pool.ttl(latest)
    if not entry.running() or ttl is NEVER:
        return None
    busy = any(e.in_flight for e in sharing)
    remaining = max(0.0, latest.last_used + ttl - time.monotonic())
    return time.time() + (ttl if busy else remaining)


def describe(pool: PoolView, entry: Entry) -> dict[str, Any]:
    """One model as ``/running`` shows it."""
    child = entry.child if entry.running() else None
    runs_on = entry.runs_on if child is not None else None
    ttl = pool.ttl(entry)
    return {
        "model": entry.name,
        "state": entry.state.public,
        "pid": child.pid if child is not None else None,
        "port": child.port if child is not None else None,
        "in_flight": entry.in_flight,
        "queued": entry.waiting,
        "ttl": None if ttl is NEVER else ttl,  # null: kept loaded for good
        "expires_at": expires_at(pool, entry),
        "memory": memory(pool, entry),
        # Where its child really runs, and how that differs from what its config asked.
        "runs_on": runs_on.devices if runs_on is not None else None,
        "warning": runs_on.warning if runs_on is not None else None,
        "load_seconds": entry.load_seconds,  # the last load's
        "tokens_per_second": entry.tokens_per_second,  # the last answer's generation
    }


def memory(pool: PoolView, entry: Entry) -> dict[str, Any] | None:
    """A model's memory: bytes in all and per device, and where the figure comes from
    (declared, measured, estimated); None when unknown (a ``cmd`` without ``memory``)."""
    found = pool.footprints.of(entry.config)
    if found is None:
        return None
    return {"bytes": found.total, "by_device": dict(found.by_device), "source": str(found.source)}


def running(pool: PoolView) -> list[dict[str, Any]]:
    return [describe(pool, e) for e in pool.entries.values() if e.running()]


def every_model(pool: PoolView) -> list[dict[str, Any]]:
    """Every configured model, loaded or not (the status page's rows)."""
    return [describe(pool, e) for e in pool.entries.values()]
