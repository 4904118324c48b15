"""In-memory children for ``Pool``: a ``Child`` that loads and stops in milliseconds, and a
``World`` that records every child's life so a test can check what ran beside what.

A fake is "up" from the moment its start begins until its stop ends (or its start fails):
the span in which a real llama-server would hold memory. ``World.most_up`` is the largest
number ever up at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.child.states import ExitHook, ProcessState, StartError, transition


@dataclass
class World:
    """Every fake's life: what is up now, the most ever up together, and each event."""

    load_seconds: dict[str, float] = field(default_factory=dict)
    stop_seconds: float = 0.005
    failing: set[str] = field(default_factory=set)
    #: Models whose load fails out of memory while more than this many others are up.
    out_of_memory: dict[str, int] = field(default_factory=dict)
    #: Models the kernel's OOM killer ends while they load: SIGKILL, and not a line logged.
    killed: set[str] = field(default_factory=set)
    #: The buffer-size lines each model logs while loading (what ``learned`` reads).
    buffer_lines: dict[str, list[str]] = field(default_factory=dict)
    up: set[FakeChild] = field(default_factory=set)
    most_up: int = 0
    events: list[str] = field(default_factory=list)
    made: list[FakeChild] = field(default_factory=list)

    def spawn(self, model: ModelConfig, on_exit: ExitHook) -> FakeChild:
        child = FakeChild(model.name, self, on_exit)
        self.made.append(child)
        return child

    def rise(self, child: FakeChild) -> None:
        self.up.add(child)
        self.most_up = max(self.most_up, len(self.up))
        self.events.append(f"start {child.name}")

    def fall(self, child: FakeChild, why: str) -> None:
        self.up.discard(child)
        self.events.append(f"{why} {child.name}")

    def child(self, name: str) -> FakeChild:
        return next(c for c in reversed(self.made) if c.name == name)


class FakeChild:
    """A ``Child`` with ``ChildProcess``'s rules: starts join, a stop cancels a load."""

    def __init__(self, name: str, world: World, on_exit: ExitHook) -> None:
        self.name = name
        self.world = world
        self.on_exit = on_exit
        self._state = ProcessState.STOPPED
        self._starting: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def pid(self) -> int | None:
        return None

    @property
    def port(self) -> int | None:
        return None

    @property
    def base_url(self) -> str:
        return f"http://fake/{self.name}"

    api_key: str | None = None

    def stderr_tail(self, n: int = 20) -> list[str]:
        return []

    def lines_since(self, mark: int) -> tuple[list[str], int]:
        return [], 0

    def buffer_lines(self) -> list[str]:
        return list(self.world.buffer_lines.get(self.name, []))

    def kill_group_now(self) -> None:
        return None

    async def start(self) -> None:
        if self._state is ProcessState.READY:
            return
        if self._state is ProcessState.STOPPING and self._stopping is not None:
            await asyncio.shield(self._stopping)
        if self._state is not ProcessState.STARTING:
            self._move(ProcessState.STARTING)
            self._starting = asyncio.create_task(self._load())
        assert self._starting is not None
        await asyncio.shield(self._starting)

    async def _load(self) -> None:
        self.world.rise(self)
        await asyncio.sleep(self.world.load_seconds.get(self.name, 0.005))
        if self._state is ProcessState.STOPPING:
            raise StartError(self.name, "stopped while loading", [])
        crowd = self.world.out_of_memory.get(self.name)
        if crowd is not None and len(self.world.up) - 1 > crowd:
            self._move(ProcessState.FAILED)
            self.world.fall(self, "oom")
            raise StartError(self.name, "exited with code 1", ["cudaMalloc failed: out of memory"])
        if self.name in self.world.killed:
            self._move(ProcessState.FAILED)
            self.world.fall(self, "killed")
            raise StartError(self.name, "exited with code -9 during load", [], exit_code=-9)
        if self.name in self.world.failing:
            self._move(ProcessState.FAILED)
            self.world.fall(self, "fail")
            raise StartError(self.name, "exited with code 1 during load", ["no such file"])
        self._move(ProcessState.READY)

    async def stop(self, reason: str, grace: float = 10.0) -> None:
        if self._state is ProcessState.STOPPED:
            return
        if self._state is ProcessState.FAILED:
            self._move(ProcessState.STOPPED)
            return
        if self._state is not ProcessState.STOPPING:
            self._move(ProcessState.STOPPING)
            self._stopping = asyncio.create_task(self._unload(reason))
        assert self._stopping is not None
        await asyncio.shield(self._stopping)

    async def _unload(self, reason: str) -> None:
        if self._starting is not None and not self._starting.done():
            await asyncio.wait({self._starting})
        await asyncio.sleep(self.world.stop_seconds)
        self.world.fall(self, f"stop reason={reason}")
        self._move(ProcessState.STOPPED)

    def crash(self) -> None:
        """Exit on its own while READY, as a crash does."""
        self._move(ProcessState.FAILED)
        self.world.fall(self, "crash")
        self.on_exit(self, 1)

    def _move(self, target: ProcessState) -> None:
        self._state = transition(self.name, self._state, target)
