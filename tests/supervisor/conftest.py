"""Fixtures shared by the supervisor's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from corral.supervisor.runtime.process import ChildProcess


@pytest.fixture
async def children() -> AsyncIterator[list[ChildProcess]]:
    """ChildProcesses a test made; each is stopped when the test ends, whatever happened."""
    made: list[ChildProcess] = []
    yield made
    for child in made:
        await child.stop("teardown", grace=1.0)
