"""One child's lifecycle, against real processes: the fake upstream in tests/fake_upstream.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable

import pytest

from corral.supervisor.runtime.child.health import probe_health
from corral.supervisor.runtime.child.process import ChildProcess
from corral.supervisor.runtime.child.states import ProcessState, StartError
from tests.support import FAKE_UPSTREAM, fake_argv, pids_gone, until

Argv = Callable[[int], list[str]]


def counting(*variants: tuple[str, ...]) -> tuple[Argv, list[int]]:
    """An argv that uses ``variants[i]`` as flags on call i (the last one from then on)."""
    ports: list[int] = []

    def argv(port: int) -> list[str]:
        ports.append(port)
        return fake_argv(*variants[min(len(ports), len(variants)) - 1])(port)

    return argv, ports


def state(child: ChildProcess) -> ProcessState:
    """Read afresh: an ``await`` in between may have changed it."""
    return child.state


def gone(pid: int) -> bool:
    return pids_gone([pid])


def grandchild_of(child: ChildProcess) -> int | None:
    for line in child.stderr_tail(50):
        if line.startswith("grandchild pid="):
            return int(line.split("=", 1)[1])
    return None


@pytest.fixture
def make(children: list[ChildProcess]) -> Callable[..., ChildProcess]:
    def build(argv: Argv, health_timeout: float = 20.0, **kwargs: object) -> ChildProcess:
        child = ChildProcess("m", argv, os.environ, health_timeout, **kwargs)  # type: ignore[arg-type]
        children.append(child)
        return child

    return build


async def test_ready_is_seen_within_a_few_ms(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--load-seconds", "0.3"))
    await child.start()
    seen_at = time.time()
    assert child.state is ProcessState.READY and child.state.public == "ready"
    assert child.pid is not None and child.port is not None
    assert child.base_url == f"http://127.0.0.1:{child.port}"
    assert await probe_health(child.port, 1.0) == 200
    await until(lambda: any("model loaded at=" in x for x in child.stderr_tail()))
    loaded_at = loaded(child)[0]
    assert child.ready_ms is not None and child.ready_ms >= 300
    lag = seen_at - loaded_at
    assert -0.01 < lag < 0.1, f"readiness seen {lag * 1000:.0f} ms after the fake was ready"


def loaded(child: ChildProcess) -> tuple[float, int]:
    """When the fake said its model was loaded, and how many /health probes it had by then."""
    line = next(x for x in child.stderr_tail(50) if "model loaded at=" in x)
    at, probes = line.split("at=")[1].split(" probes=")
    return float(at), int(probes)


@pytest.mark.parametrize("ready_line", ["model loaded at=", None])
async def test_a_ready_line_replaces_polling_while_loading(
    make: Callable[..., ChildProcess], ready_line: str | None
) -> None:
    child = make(fake_argv("--load-seconds", "2"), ready_line=ready_line)
    await child.start()
    seen_at = time.time()
    loaded_at, probes = loaded(child)
    assert seen_at - loaded_at < 0.1, f"readiness seen {(seen_at - loaded_at) * 1000:.0f} ms late"
    if ready_line is not None:
        # One probe at spawn, then one a second (the safety net) over a 2 s load.
        assert probes <= 4, probes
    else:
        assert probes >= 50, probes  # a `cmd` server without a line: polled every 10 ms


async def test_a_stop_wakes_a_load_waiting_for_its_line(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--load-seconds", "30"), ready_line="never printed")
    starting = asyncio.create_task(child.start())
    await until(lambda: any("listening" in x for x in child.stderr_tail()))
    began = time.monotonic()
    await child.stop("unload")
    assert time.monotonic() - began < 0.5  # not a QUIET_POLL (1 s) later
    with pytest.raises(StartError):
        await starting


async def test_concurrent_starts_spawn_one_process(make: Callable[..., ChildProcess]) -> None:
    argv, ports = counting(("--load-seconds", "0.2"))
    child = make(argv)
    await asyncio.gather(*(child.start() for _ in range(5)))
    assert len(ports) == 1
    pid = child.pid
    await child.start()  # READY: returns at once, same process
    assert child.pid == pid and len(ports) == 1


async def test_slow_start_is_loading_until_ready(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--load-seconds", "1.0"))
    starting = asyncio.create_task(child.start())
    await until(lambda: child.port is not None)
    await until(lambda: any("listening" in x for x in child.stderr_tail()))
    assert child.state is ProcessState.STARTING and child.state.public == "loading"
    assert await probe_health(child.port or 0, 1.0) == 503
    await child.wait_ready()
    await starting
    assert child.ready_ms is not None and child.ready_ms >= 1000


async def test_crash_during_load_then_a_clean_retry(make: Callable[..., ChildProcess]) -> None:
    argv, ports = counting(("--crash-during-load", "--stderr-lines", "2"), ())
    child = make(argv)
    with pytest.raises(StartError) as caught:
        await child.start()
    error = caught.value
    assert error.model_name == "m"
    assert error.reason == "exited with code 3 during load"
    assert any("failed to load model" in line for line in error.stderr_tail)
    assert "model 'm' failed to start: exited with code 3 during load; last lines:" in str(error)
    assert child.state is ProcessState.FAILED
    await child.start()
    assert state(child) is ProcessState.READY and len(ports) == 2


async def test_never_ready_fails_after_health_timeout(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--never-ready"), health_timeout=1.5)
    began = time.monotonic()
    with pytest.raises(StartError, match=r"not ready after 1\.5 s"):
        await child.start()
    assert time.monotonic() - began < 5
    assert child.state is ProcessState.FAILED
    assert child.pid is not None and gone(child.pid)


async def test_crash_while_ready_is_reported(make: Callable[..., ChildProcess]) -> None:
    exits: list[tuple[ChildProcess, int]] = []
    child = make(
        fake_argv("--crash-after-seconds", "0.3", "--spawn-grandchild"),
        on_exit=lambda c, code: exits.append((c, code)),
    )
    await child.start()
    await until(lambda: grandchild_of(child) is not None)
    grandchild = grandchild_of(child) or 0
    await until(lambda: bool(exits))
    assert exits == [(child, 5)]
    assert child.state is ProcessState.FAILED
    # The fake's own child would hold the pipe and the port: it goes with the group.
    await until(lambda: gone(grandchild))


async def test_stop_kills_the_whole_group(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--spawn-grandchild"))
    await child.start()
    await until(lambda: grandchild_of(child) is not None)
    grandchild, pid = grandchild_of(child) or 0, child.pid or 0
    await child.stop("unload")
    assert child.state is ProcessState.STOPPED
    assert gone(pid)
    await until(lambda: gone(grandchild))
    await child.stop("unload")  # idempotent
    assert child.state is ProcessState.STOPPED


async def test_sigterm_ignored_means_sigkill_after_grace(
    make: Callable[..., ChildProcess],
) -> None:
    child = make(fake_argv("--ignore-sigterm"))
    await child.start()
    pid = child.pid or 0
    began = time.monotonic()
    await child.stop("shutdown", grace=0.5)
    assert time.monotonic() - began >= 0.5
    assert child.state is ProcessState.STOPPED
    assert gone(pid)


async def test_kill_group_now_for_exit_paths(make: Callable[..., ChildProcess]) -> None:
    exits: list[int] = []
    child = make(fake_argv("--spawn-grandchild"), on_exit=lambda _, code: exits.append(code))
    await child.start()
    await until(lambda: grandchild_of(child) is not None)
    child.kill_group_now()
    await until(lambda: bool(exits))
    assert exits == [-signal.SIGKILL] and child.state is ProcessState.FAILED
    await until(lambda: gone(grandchild_of(child) or 0))
    child.kill_group_now()  # dead already: a no-op, never a signal to a reused group id


async def test_stop_while_loading_cancels_the_load(make: Callable[..., ChildProcess]) -> None:
    child = make(fake_argv("--load-seconds", "30"))
    starting = asyncio.create_task(child.start())
    await until(lambda: child.pid is not None)
    await child.stop("swap")
    assert child.state is ProcessState.STOPPED
    with pytest.raises(StartError, match="stopped while loading"):
        await starting
    assert gone(child.pid or 0)


async def test_taken_port_is_retried(make: Callable[..., ChildProcess]) -> None:
    argv, ports = counting(("--fail-bind",), ())
    child = make(argv)
    await child.start()
    assert child.state is ProcessState.READY and len(ports) == 2


async def test_port_taken_every_time_gives_up(make: Callable[..., ChildProcess]) -> None:
    argv, ports = counting(("--fail-bind",))
    child = make(argv)
    with pytest.raises(StartError, match="exited with code 1") as caught:
        await child.start()
    assert len(ports) == 3
    assert any("Address already in use" in line for line in caught.value.stderr_tail)


async def test_missing_binary_is_a_start_error(make: Callable[..., ChildProcess]) -> None:
    child = make(lambda port: ["/nonexistent/llama-server", "--port", str(port)])
    with pytest.raises(StartError, match="cannot run '/nonexistent/llama-server'"):
        await child.start()
    assert child.state is ProcessState.FAILED


PARENT = """
import asyncio, os, sys
from corral.supervisor.runtime.child.process import ChildProcess

async def main() -> None:
    argv = lambda port: [sys.executable, sys.argv[1], "--port", str(port)]
    child = ChildProcess("m", argv, os.environ, 20.0)
    await child.start()
    print(child.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_child_dies_with_a_sigkilled_parent() -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, str(FAKE_UPSTREAM), stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    try:
        line = await asyncio.wait_for(parent.stdout.readline(), 20)
        child_pid = int(line)
        assert not gone(child_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
    await until(lambda: gone(child_pid), within=5)
