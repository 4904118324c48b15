"""One configured model's place in the pool: its child (shared with presets of the same file),
its requests in flight and waiting, its load in progress, its last use and a client's
keep_alive.

Owns only this bookkeeping; ``scheduler`` decides and ``pool`` acts on it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.child.command import LaunchKey, alias, launch_key
from corral.supervisor.runtime.child.states import Child, ProcessState
from corral.supervisor.runtime.memory.offload import RunsOn
from corral.supervisor.runtime.ttl import Ttl


@dataclass(eq=False)  # compared and hashed by identity: a reload may hold two of one name
class Entry:
    """One configured model and, while loaded, its child."""

    config: ModelConfig
    child: Child | None = None
    in_flight: int = 0
    waiting: int = 0
    last_used: float = field(default_factory=time.monotonic)
    #: The load in progress (or the last one): requests for this model await it.
    load_task: asyncio.Task[None] | None = None
    #: The load has decided what to stop and owns its place until it ends.
    claimed: bool = False
    failed_at: float = -math.inf
    keep_alive: Ttl | None = None  # a client's keep_alive, overriding the ttl until unload
    #: The load in progress was a preload's: a request that hangs up never cancels it.
    preloading: bool = False
    #: Seconds the last load took, and tokens/s of the last answer (the status page's).
    load_seconds: float | None = None
    tokens_per_second: float | None = None
    #: Where its child runs, read from the child's log after the load (None: not known).
    runs_on: RunsOn | None = None
    #: Requests in flight are finishing before the child stops: admit nobody new.
    draining: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Semaphore = field(init=False)
    #: Entries with equal keys run the same command: they share one child (presets).
    key: LaunchKey = field(init=False)

    def __post_init__(self) -> None:
        self.idle.set()
        self.drained.set()
        self.gate = asyncio.Semaphore(self.config.concurrency)
        self.key = launch_key(self.config)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> ProcessState:
        return self.child.state if self.child is not None else ProcessState.STOPPED

    def admitting(self) -> bool:
        """Ready and not being drained: a request may go straight through."""
        return self.state is ProcessState.READY and not self.draining

    def running(self) -> bool:
        return self.child is not None and self.state in (
            ProcessState.STARTING,
            ProcessState.READY,
        )

    def answers_as(self) -> str | None:
        """The name its child writes in answers' ``model``: the ``--alias`` corral gave it,
        which is the name of the entry that started it (the launcher names a child after its
        model), not always this one's: presets share a child. None where corral gave none
        (``command.alias``: the same for every entry of one launch key)."""
        if self.child is None or alias(self.config) is None:
            return None
        return self.child.name


@dataclass(frozen=True)
class Lease:
    """What a request holds while it talks to a model's child."""

    model: ModelConfig
    base_url: str
    api_key: str | None = None
    #: The name the child's answers carry (``Entry.answers_as``); None: not known.
    answers_as: str | None = None

    @property
    def port(self) -> int:
        """The child's port on 127.0.0.1 (``base_url``'s)."""
        return int(self.base_url.rpartition(":")[2])


def reloaded(
    old: Mapping[str, Entry], models: Iterable[ModelConfig], keep: frozenset[str]
) -> tuple[dict[str, Entry], list[Entry]]:
    """A reload's entries, and the old ones to retire: an entry the plan keeps is carried
    over as it is, any other is new (and shares a running child of an equal launch key); an
    old entry retires when it was replaced and still holds (or is loading) a child that no
    kept entry uses."""
    new = {m.name: old[m.name] if m.name in keep else Entry(m) for m in models}
    kept_children = {id(e.child) for e in new.values() if e.child is not None}
    # A child still used by a kept preset stays; the changed entry lets go of it.
    retiring = [
        e
        for name, e in old.items()
        if new.get(name) is not e
        and (e.running() or e.claimed)
        and id(e.child) not in kept_children
    ]
    for entry in new.values():
        if entry.child is None:
            shared = [e.child for e in new.values() if e.key == entry.key and e.running()]
            entry.child = shared[0] if shared else None
    return new, retiring
