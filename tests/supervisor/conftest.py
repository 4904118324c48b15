"""Fixtures shared by the supervisor's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from corral.generator.settings import Config
from corral.supervisor.runtime.child.process import ChildProcess
from corral.supervisor.runtime.pool import Pool
from tests.supervisor.fake_child import World


@pytest.fixture
async def children() -> AsyncIterator[list[ChildProcess]]:
    """ChildProcesses a test made; each is stopped when the test ends, whatever happened."""
    made: list[ChildProcess] = []
    yield made
    for child in made:
        await child.stop("teardown", grace=1.0)


@pytest.fixture
def world() -> World:
    """The fake children's world (``fake_child``) for in-process ``Pool`` tests."""
    return World()


@pytest.fixture
async def make_pool(world: World) -> AsyncIterator[Callable[[Config], Pool]]:
    """Builds a started pool over fake children; each is shut down when the test ends.
    No memory is detected (``detected={}``): only budgets a test declares apply."""
    made: list[Pool] = []

    def build(cfg: Config) -> Pool:
        pool = Pool(cfg, "test", spawn=world.spawn, detected={})
        pool.start_background()
        made.append(pool)
        return pool

    yield build
    for pool in made:
        await pool.shutdown()
