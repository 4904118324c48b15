"""What a load and the views may read of the pool, and ask of it: the pool as an interface.

Owns two protocols, so that ``loads`` and ``views`` depend on what they use, not on
``pool`` (which imports them: a circle otherwise). ``PoolView`` is what a view reads;
``PoolEffects`` adds what a load asks the pool to carry out (stop, spawn, wake), as
llama-swap's scheduler calls back through its ``Effects``. It implements nothing: ``Pool``
does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config
from corral.supervisor.runtime import scheduler
from corral.supervisor.runtime.child.states import Child
from corral.supervisor.runtime.entries import Entry
from corral.supervisor.runtime.events import EventBus
from corral.supervisor.runtime.footprints import Footprints
from corral.supervisor.runtime.ttl import Ttl


class PoolView(Protocol):
    """The pool as ``views`` read it."""

    @property
    def entries(self) -> Mapping[str, Entry]: ...

    @property
    def footprints(self) -> Footprints: ...

    def every_entry(self) -> list[Entry]: ...

    def sharing(self, entry: Entry) -> list[Entry]: ...

    def ttl(self, entry: Entry) -> Ttl: ...


class PoolEffects(PoolView, Protocol):
    """The pool as a load uses it: what it reads, and the effects it asks for."""

    @property
    def config(self) -> Config: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def placement(self) -> scheduler.Placement: ...

    def budget(self, entry: Entry) -> scheduler.Budget | None: ...

    def by_ref(self, resident: scheduler.Resident) -> Entry: ...

    async def retire(self, entries: Iterable[Entry], reason: str) -> None: ...

    def spawn(self, model: ModelConfig) -> Child: ...

    def wake(self) -> None: ...
