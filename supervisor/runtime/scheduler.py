"""Who may run: the scheduling decisions, as pure functions.

Owns the rules: which running models must stop before another can start (groups with
llama-swap's swap/exclusive/persistent semantics; with no groups, one model at a time), and
which idle models have outlived their TTL. It performs no I/O and keeps no state: ``pool``
carries the decisions out. A memory-aware policy would be another function with this shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.generator.settings import Config

#: Models outside every group share this one: one model at a time, as llama-swap does.
DEFAULT_GROUP = "(default)"


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
    def from_config(cls, config: Config) -> Placement:
        group_of = {m.name: config.group_of(m.name) or DEFAULT_GROUP for m in config.models}
        rules = {
            name: GroupRule(swap=g.swap, exclusive=g.exclusive, persistent=g.persistent)
            for name, g in config.groups.items()
        }
        rules[DEFAULT_GROUP] = GroupRule()
        return cls(group_of=group_of, rules=rules)

    def group(self, model: str) -> str:
        return self.group_of.get(model, DEFAULT_GROUP)

    def rule(self, model: str) -> GroupRule:
        return self.rules.get(self.group(model), GroupRule())


#: Settings read once, when corral starts: a reload cannot apply a change to them.
RESTART_ONLY = ("host", "port")


def needs_restart(old: Config, new: Config) -> list[str]:
    """The settings that changed but that only a restart applies."""
    return [key for key in RESTART_ONLY if getattr(old, key) != getattr(new, key)]


def to_evict(target: str, running: Iterable[str], placement: Placement) -> list[str]:
    """The running models that must stop before ``target`` may start, in a stable order.

    A swap group holds one member at a time; an exclusive group's load stops every model in
    other groups, except members of persistent groups.
    """
    group = placement.group(target)
    rule = placement.rule(target)
    evict = []
    for other in running:
        if other == target:
            continue
        other_group = placement.group(other)
        if other_group == group:
            if rule.swap:
                evict.append(other)
        elif rule.exclusive and not placement.rule(other).persistent:
            evict.append(other)
    return sorted(evict)


@dataclass(frozen=True)
class Idle:
    """What the TTL rule needs to know of one running model."""

    name: str
    in_flight: int
    last_used: float
    ttl: float  # seconds; 0 or less = never unload


def expired(models: Iterable[Idle], now: float) -> list[str]:
    """Models idle (nothing in flight) for at least their TTL since the last request ended."""
    return sorted(
        m.name for m in models if m.in_flight == 0 and m.ttl > 0 and now - m.last_used >= m.ttl
    )


def next_deadline(models: Iterable[Idle]) -> float:
    """When the next idle model's TTL runs out (monotonic seconds); inf when none will."""
    deadlines = [m.last_used + m.ttl for m in models if m.in_flight == 0 and m.ttl > 0]
    return min(deadlines, default=math.inf)
