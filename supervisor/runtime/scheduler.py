"""Who may run, and for how long: every scheduling decision, as a pure function.

Owns the rules: admission (concurrency plus a bounded queue); which running models must stop
before another can start (groups with llama-swap's swap/exclusive/persistent semantics; with
no groups, one model at a time), and that a load in progress owns its place until it ends;
which presets share a child; which waiters share a failed load; and what a reload keeps,
replaces, or cannot apply without a restart. How long a model stays loaded is ``ttl``'s
rule. When memory budgets are in force, ``plan_load`` also asks ``placement`` what fits:
groups still apply on top, and models outside every group are then limited by memory instead
of running one at a time. It performs no I/O and keeps no state: ``pool`` carries the
decisions out.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.generator.settings import Config
from corral.supervisor.runtime.memory import placement as memory_policy

#: Models outside every group share this one: one at a time (as llama-swap), unless by memory.
DEFAULT_GROUP = "(default)"


# -- admission ----------------------------------------------------------------------------


def admits(in_flight: int, waiting: int, concurrency: int, max_queue: int) -> bool:
    """Whether one more request may run or queue for a model (else: 503, retry later)."""
    return in_flight + waiting < concurrency + max_queue


def admits_bytes(held: int, size: int, limit: int) -> bool:
    """Whether a request whose body is ``size`` bytes may wait while waiting requests hold
    ``held`` bytes over all models (else: 503). Queued bodies stay in memory: 16 of 31 MiB
    behind one busy model took corral from 56 MB to 1.1 GB. The first to wait always may, so
    a body that ``max_body_bytes`` allows is never refused for its size alone."""
    return held == 0 or held + size <= limit


def shares_failure(failed_at: float, arrived: float) -> bool:
    """A request waiting when its model's load failed gets that failure; a later one tries
    again."""
    return failed_at >= arrived


def sharing(key: Hashable, keys: Mapping[str, Hashable]) -> list[str]:
    """The models on the same child as one with launch ``key``: presets that differ only in
    request defaults (none evicts another)."""
    return sorted(name for name, other in keys.items() if other == key)


# -- who runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRule:
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


@dataclass(frozen=True)
class Placement:
    """Where each model sits: its group's name, and every group's rule."""

    group_of: Mapping[str, str]
    rules: Mapping[str, GroupRule]

    @classmethod
    def from_config(cls, config: Config, by_memory: bool = False) -> Placement:
        """``by_memory``: budgets are in force, so models outside every group may run side
        by side as far as memory allows, instead of one at a time."""
        group_of = {m.name: config.group_of(m.name) or DEFAULT_GROUP for m in config.models}
        rules = {
            name: GroupRule(swap=g.swap, exclusive=g.exclusive, persistent=g.persistent)
            for name, g in config.groups.items()
        }
        rules[DEFAULT_GROUP] = GroupRule(swap=not by_memory, exclusive=not by_memory)
        return cls(group_of=group_of, rules=rules)

    def group(self, model: str) -> str:
        return self.group_of.get(model, DEFAULT_GROUP)

    def rule(self, model: str) -> GroupRule:
        return self.rules.get(self.group(model), GroupRule())


def conflicts(target: str, other: str, placement: Placement) -> bool:
    """Whether ``other`` must stop before ``target`` may start.

    A swap group holds one member at a time; an exclusive group's load stops every model in
    other groups, except members of persistent groups.
    """
    rule = placement.rule(target)
    if placement.group(other) == placement.group(target):
        return rule.swap
    return rule.exclusive and not placement.rule(other).persistent


def to_evict(target: str, running: Iterable[str], placement: Placement) -> list[str]:
    """The running models (by name) that must stop before ``target`` may start, sorted."""
    return sorted(o for o in running if o != target and conflicts(target, o, placement))


@dataclass(frozen=True)
class Resident:
    """An entry whose child holds memory or is about to (running, stopping, or claimed by a
    load); ``ref`` tells the pool which. Presets on one child share its ``key``."""

    ref: int
    name: str
    key: Hashable
    loading: bool = False
    memory: Mapping[str, int] = field(default_factory=dict)  # bytes per device
    pending: int = 0  # requests in flight or queued
    last_used: float = 0.0


@dataclass(frozen=True)
class Budget:
    """What a load's target needs per device, and what each device may hold."""

    need: Mapping[str, int]
    budgets: Mapping[str, int]


@dataclass(frozen=True)
class LoadPlan:
    """A load's next step: let ``wait_for`` (loads in progress) end, or ``busy`` (models
    serving requests, whose memory is needed) go idle, and decide again; or stop ``evict``
    (after their requests finish) and start; or answer ``refuse`` (it can never fit)."""

    wait_for: tuple[Resident, ...] = ()
    evict: tuple[Resident, ...] = ()
    busy: tuple[Resident, ...] = ()
    refuse: str | None = None


def plan_load(
    target: str,
    key: Hashable,
    residents: Iterable[Resident],
    placement: Placement,
    memory: Budget | None = None,
    swap_now: bool = False,
) -> LoadPlan:
    """What loading ``target`` (launch ``key``) needs first.

    A load that has decided owns its place until it ends: another load that conflicts with
    it waits, and decides again then, instead of stopping it half-loaded or starting beside
    it. A resident with the same launch key is the target's own child (a preset). With
    ``memory``, what the groups leave must also fit: idle models go least recently used
    first; busy ones are waited for (``busy``) unless ``swap_now`` (the bounded wait ran
    out: they drain, then stop); persistent ones stay.
    """
    others = [r for r in residents if r.key != key]
    blocking = [r for r in others if conflicts(target, r.name, placement)]
    loading = tuple(r for r in blocking if r.loading)
    if loading:
        return LoadPlan(wait_for=loading)
    if memory is None:
        return LoadPlan(evict=_by_name(blocking))
    children = _children(others)
    decision = memory_policy.place(
        target,
        memory.need,
        memory.budgets,
        [_policy_view(group, placement, swap_now) for group in children.values()],
        group_evict=[n for n, group in children.items() if any(r in blocking for r in group)],
    )
    if isinstance(decision, memory_policy.Refuse):
        return LoadPlan(refuse=f"model {target!r} cannot load: {decision.message}")
    if isinstance(decision, memory_policy.Admit):
        return LoadPlan(evict=_by_name(r for n in decision.evict for r in children[n]))
    held = [r for name in decision.blockers for r in children[name]]
    if any(r.loading for r in held):
        return LoadPlan(wait_for=tuple(r for r in held if r.loading))
    return LoadPlan(busy=_by_name(held)) if held else LoadPlan(evict=_by_name(blocking))


def plan_retry(
    target: str,
    key: Hashable,
    residents: Iterable[Resident],
    placement: Placement,
    devices: Iterable[str],
) -> tuple[Resident, ...] | None:
    """The idle models on ``devices`` to stop before one more try of a load that failed out
    of memory; None when none is left."""
    children = _children(r for r in residents if r.key != key)
    views = [_policy_view(group, placement, False) for group in children.values()]
    decision = memory_policy.after_out_of_memory(target, views, devices, retried=False)
    return None if decision is None else _by_name(r for n in decision.evict for r in children[n])


def _children(residents: Iterable[Resident]) -> dict[str, list[Resident]]:
    """Residents by child, under its first name (presets share one: its memory counts once)."""
    found: dict[Hashable, list[Resident]] = {}
    for r in sorted(residents, key=lambda r: r.name):
        found.setdefault(r.key, []).append(r)
    return {group[0].name: group for group in found.values()}


def _policy_view(
    group: Sequence[Resident], placement: Placement, swap_now: bool
) -> memory_policy.Resident:
    loading = any(r.loading for r in group)
    pending = sum(r.pending for r in group)
    return memory_policy.Resident(
        name=group[0].name,
        memory=group[0].memory,
        # Never stop a half-loaded child; a busy one only once the bounded wait ran out.
        in_flight=1 if loading or (pending and not swap_now) else 0,
        last_used=max(r.last_used for r in group),
        persistent=any(placement.rule(r.name).persistent for r in group),
    )


def _by_name(residents: Iterable[Resident]) -> tuple[Resident, ...]:
    return tuple(sorted(residents, key=lambda r: r.name))


# -- reload -------------------------------------------------------------------------------

#: Settings that shape every child: a change restarts every model.
CHILD_WIDE = ("llama_server", "health_timeout")
#: Settings read once, when corral starts (the listening socket): a reload cannot apply a
#: change to them. Limits and API keys are read per request, so a reload applies those.
RESTART_ONLY = ("host", "port")


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does: ``keep`` names models that keep their place and child as they are
    (the rest start afresh when next asked for); ``restart`` names the settings that
    changed but that only a restart applies."""

    keep: frozenset[str]
    restart: tuple[str, ...]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """A model is kept when its entry and the settings that shape every child are unchanged."""
    same_children = all(getattr(old, k) == getattr(new, k) for k in CHILD_WIDE)
    before = {m.name: m for m in old.models}
    keep = frozenset(m.name for m in new.models if same_children and before.get(m.name) == m)
    restart = tuple(k for k in RESTART_ONLY if getattr(old, k) != getattr(new, k))
    return ReloadPlan(keep=keep, restart=restart)
