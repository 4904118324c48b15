"""One configured model's place in the pool: its child (shared with presets of the same file),
its requests in flight and waiting, its last use and a client's keep_alive.

Owns only this bookkeeping; ``pool`` decides what happens to it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from corral.generator.settings import ModelConfig
from corral.supervisor.runtime.command import LaunchKey, launch_key
from corral.supervisor.runtime.process import ChildProcess
from corral.supervisor.runtime.states import ProcessState


@dataclass
class Entry:
    """One configured model and, while loaded, its child."""

    config: ModelConfig
    child: ChildProcess | None = None
    in_flight: int = 0
    waiting: int = 0
    last_used: float = field(default_factory=time.monotonic)
    draining: bool = False
    start_task: asyncio.Task[None] | None = None
    failed_at: float = -math.inf
    keep_alive: float | None = None  # a client's keep_alive, overriding the ttl until unload
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Semaphore = field(init=False)
    #: Entries with equal keys run the same command: they share one child (presets).
    key: LaunchKey = field(init=False)

    def __post_init__(self) -> None:
        self.idle.set()
        self.gate = asyncio.Semaphore(self.config.concurrency)
        self.key = launch_key(self.config)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> ProcessState:
        return self.child.state if self.child is not None else ProcessState.STOPPED

    def admitting(self) -> bool:
        """Ready and not being drained for a swap: a request may go straight through."""
        return self.state is ProcessState.READY and not self.draining

    def running(self) -> bool:
        return self.child is not None and self.state in (
            ProcessState.STARTING,
            ProcessState.READY,
        )


@dataclass(frozen=True)
class Lease:
    """What a request holds while it talks to a model's child."""

    model: ModelConfig
    base_url: str
