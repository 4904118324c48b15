"""The stray reaper: children that outlived their corral are killed; nothing else is."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping

import psutil
import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.child import command, strays
from corral.supervisor.runtime.child.strays import reap_strays

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(120)'"


@pytest.fixture
def owner() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"  # unique: never touches another run's processes


@pytest.fixture
def started() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:  # whatever the reaper left alone
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def marked_env(owner: str) -> dict[str, str]:
    # The environment corral gives a child, recording this test process as its corral.
    return command.build_env(ModelConfig(name="m", cmd=["x", "{port}"]), os.environ, owner)


def orphan(env: Mapping[str, str], pids: list[int]) -> int:
    """A process whose parent exits at once: it is adopted by init (or a subreaper)."""
    shell = f"{SLEEPER} >/dev/null 2>&1 & echo $!"
    out = subprocess.run(["sh", "-c", shell], env=env, capture_output=True, check=True)
    pid = int(out.stdout)
    pids.append(pid)
    return pid


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_orphan_with_the_marker_is_reaped(owner: str, started: list[int]) -> None:
    pid = orphan(marked_env(owner), started)
    assert alive(pid)
    assert reap_strays(owner, grace=5.0) == [pid]
    assert not alive(pid)


def test_orphan_without_the_marker_is_left_alone(owner: str, started: list[int]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (strays.MARKER, strays.PARENT_MARKER)}
    pid = orphan(env, started)
    assert reap_strays(owner, grace=5.0) == []
    assert alive(pid)


def test_another_instances_orphan_is_left_alone(owner: str, started: list[int]) -> None:
    pid = orphan(marked_env(f"{owner}-other"), started)
    assert reap_strays(owner, grace=5.0) == []
    assert alive(pid)


def test_a_live_corrals_own_child_is_left_alone(owner: str, started: list[int]) -> None:
    # Its recorded corral (this test process) is still its parent: not a stray.
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    child = subprocess.Popen(sleep, env=marked_env(owner))
    started.append(child.pid)
    try:
        assert reap_strays(owner, grace=5.0) == []
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
