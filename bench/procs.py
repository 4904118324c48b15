"""The benchmark's processes: starting them so that none outlives the harness, and reading
what they cost.

Owns spawning (own session, killed with the harness even on SIGKILL), stopping a process
and everything below it, the registry that the harness empties on exit or Ctrl-C, waiting
for a condition with a timeout, free ports, and resident memory / CPU of a process tree.
It knows nothing of llama-server or corral (see ``contenders``).
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_live: list[subprocess.Popen[bytes]] = []


def _die_with_parent() -> None:
    # A harness killed with SIGKILL runs no cleanup; the kernel then kills its children.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log``; registered for ``stop_all``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            # Own session: a Ctrl-C in the terminal reaches the harness only, which then
            # stops each child in order instead of all of them dying at once mid-request.
            start_new_session=True,
            # The harness starts no threads of its own, so a preexec_fn is safe here.
            preexec_fn=_die_with_parent,
        )
    _live.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM ``proc`` and wait; then kill it and anything it left below it."""
    try:
        below = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        below = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    # A supervisor stops its own children on SIGTERM; these are only the ones it missed.
    _gone, alive = psutil.wait_procs(below, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)
    if proc in _live:
        _live.remove(proc)


def stop_all() -> None:
    """Stop every process the harness started, newest first."""
    while _live:
        stop(_live[-1], timeout=10)


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, every: float = 0.01
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every live process below it."""
    try:
        root = psutil.Process(pid)
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def footprint(pid: int, window: float) -> tuple[float, float, int]:
    """(resident MB, CPU % of one core, processes below ``pid``) over ``window`` seconds."""
    procs = tree(pid)
    before = {p.pid: _cpu(p) for p in procs}
    start = time.monotonic()
    time.sleep(window)  # the measurement itself: CPU time accrued over this window
    elapsed = time.monotonic() - start
    procs = tree(pid)
    used = sum(max(0.0, _cpu(p) - before.get(p.pid, 0.0)) for p in procs)
    rss = sum(_rss(p) for p in procs)
    return rss / 2**20, 100.0 * used / elapsed, len(procs) - 1


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` (user + system, children not counted), threads that have ended
    included: summing the live threads' ``schedstat`` (to the nanosecond) lost most of the
    router's time, which llama.cpp spends in a thread per request (50 against 122 µs per
    token measured). The kernel counts it in 10 ms ticks: compare sums over many tokens."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system
