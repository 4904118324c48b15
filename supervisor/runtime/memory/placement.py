"""Who may be loaded beside whom, by memory: admit, evict, wait or refuse. Pure functions.

Owns the memory policy: a model is admitted if its footprint fits every device's budget
beside what is loaded; otherwise idle models are evicted, least recently used first, until
it fits; models with requests in flight are waited for, never cut off; ``persistent`` ones
are never evicted; a model that cannot fit at all is refused with the figures. Also the
retry after an out-of-memory load, and the bounded wait that keeps two alternating models
from swapping on every request. It performs no I/O and keeps no state; group rules are
decided by ``scheduler.to_evict`` and come in as ``group_evict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.generator.sizes import format_size


@dataclass(frozen=True)
class Resident:
    """What the policy needs to know of one loaded model."""

    name: str
    memory: Mapping[str, int]  # bytes per device
    in_flight: int = 0  # requests being served or queued for it
    last_used: float = 0.0  # monotonic seconds when its last request ended
    persistent: bool = False


@dataclass(frozen=True)
class Admit:
    """Load the model once these are stopped (in this order; empty: load it now)."""

    evict: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wait:
    """It fits only once these busy models are idle: ask again when a request ends."""

    blockers: tuple[str, ...]


@dataclass(frozen=True)
class Refuse:
    """It cannot fit while these hold the device: answer 503 with ``message``."""

    device: str
    needed: int
    budget: int
    holders: Mapping[str, int] = field(default_factory=dict)  # pinned models' bytes there

    @property
    def message(self) -> str:
        text = (
            f"needs {format_size(self.needed)} on {self.device}, "
            f"whose budget is {format_size(self.budget)}"
        )
        if self.holders:
            held = ", ".join(f"{n} ({format_size(b)})" for n, b in sorted(self.holders.items()))
            text += f", of which persistent models hold {held}"
        return text


Decision = Admit | Wait | Refuse


def place(
    target: str,
    need: Mapping[str, int],
    budgets: Mapping[str, int],
    residents: Sequence[Resident],
    group_evict: Iterable[str] = (),
) -> Decision:
    """What must happen before ``target`` (needing ``need`` bytes per device) may load.

    ``group_evict`` (the group rules' answer) is stopped whatever the memory says. A device
    without a budget is not limited. Idle models go least recently used first, and only
    those that hold memory where ``target`` is short of it.
    """
    evict = list(dict.fromkeys(name for name in group_evict if name != target))
    staying = [r for r in residents if r.name != target and r.name not in evict]
    for device, bytes_needed in sorted(need.items()):
        budget = budgets.get(device)
        if budget is None or bytes_needed <= 0:
            continue
        pinned = {r.name: r.memory.get(device, 0) for r in staying if r.persistent}
        pinned = {name: held for name, held in pinned.items() if held > 0}
        if bytes_needed > budget - sum(pinned.values()):
            return Refuse(device=device, needed=bytes_needed, budget=budget, holders=pinned)

    def short() -> set[str]:
        return {
            device
            for device, bytes_needed in need.items()
            if device in budgets
            and bytes_needed + sum(r.memory.get(device, 0) for r in staying) > budgets[device]
        }

    missing = short()
    idle = sorted(
        (r for r in staying if r.in_flight == 0 and not r.persistent),
        key=lambda r: (r.last_used, r.name),
    )
    for resident in idle:
        if not missing:
            break
        if any(resident.memory.get(device, 0) > 0 for device in missing):
            evict.append(resident.name)
            staying.remove(resident)
            missing = short()
    if not missing:
        return Admit(evict=tuple(evict))
    busy = [
        r.name
        for r in staying
        if not r.persistent and any(r.memory.get(device, 0) > 0 for device in missing)
    ]
    return Wait(blockers=tuple(sorted(busy)))


def after_out_of_memory(
    target: str, residents: Sequence[Resident], devices: Iterable[str], retried: bool
) -> Admit | None:
    """A load failed out of memory although the figures said it fit: the estimate was low.

    The first time, stop every idle, non-persistent model on ``target``'s devices and try
    once more. None: give up (the load fails with the child's log, as any failed load),
    because this was the retry or nothing idle is left to stop.
    """
    on = set(devices)
    idle = sorted(
        (
            r
            for r in residents
            if r.name != target
            and r.in_flight == 0
            and not r.persistent
            and any(r.memory.get(d, 0) > 0 for d in on)
        ),
        key=lambda r: (r.last_used, r.name),
    )
    if retried or not idle:
        return None
    return Admit(evict=tuple(r.name for r in idle))


@dataclass(frozen=True)
class Turn:
    """Whether to swap now for a model that waits, and if not, when to ask again."""

    swap: bool
    recheck_at: float  # monotonic seconds; only meaningful when swap is False


def take_turn(now: float, waiting_since: float, loaded_pending: int, max_swap_wait: float) -> Turn:
    """Swap to a waiting model now, or keep serving the loaded model's own requests?

    When requests for A and B alternate and only one fits, swapping on every request
    spends the time loading. So the loaded model keeps serving its pending requests (in
    flight and queued, including ones that arrive meanwhile) until it has none, or until
    the other model's oldest request has waited ``max_swap_wait`` seconds: then it swaps,
    so neither side starves. With ``max_swap_wait`` 0 it swaps as soon as it may.
    """
    deadline = waiting_since + max_swap_wait
    if loaded_pending <= 0 or now >= deadline:
        return Turn(swap=True, recheck_at=now)
    return Turn(swap=False, recheck_at=deadline)


def may_join(now: float, other_waiting_since: float | None, max_swap_wait: float) -> bool:
    """May a new request join the loaded model's queue, ahead of a model that waits?

    Yes until that wait reaches ``max_swap_wait``; after it, new requests queue behind the
    swap, or a steady stream for the loaded model would keep the other out for ever.
    """
    return other_waiting_since is None or now < other_waiting_since + max_swap_wait
