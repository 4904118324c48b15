"""No child outlives its corral: the kernel's parent-death signal, and a reaper for what escapes it.

Owns both defences against a llama-server left holding GPU memory after corral died:
``parent_death_hook`` (runs in each child before exec: PR_SET_PDEATHSIG=SIGKILL, Linux) and
``reap_strays`` (run at start: kills marked processes whose corral is gone). The hook cannot
cover a grandchild, since the kernel clears the setting on fork (a model's ``cmd`` wrapper
may start the real server), nor other systems; the reaper catches those on the next start.

It does not spawn or stop live children (see ``process``); the markers themselves are set by
``command.build_env``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable

import psutil

#: Set in every child's environment so that a restarted corral can recognise the children
#: that a crashed predecessor left behind (see ``strays``).
MARKER = "CORRAL_CHILD"
#: The pid of the corral that spawned the child; a child whose ancestors no longer include
#: it has lost its parent.
PARENT_MARKER = "CORRAL_PARENT"

#: One spawn's own mark (a random token), which its descendants inherit: a stop finds by it
#: the processes that left the child's process group (``setsid``).
SPAWN_MARKER = "CORRAL_SPAWN"

_PR_SET_PDEATHSIG = 1
log = logging.getLogger("corral")


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once here: the hook runs between fork and exec, where loading a library is unsafe.
_PRCTL = _load_prctl()


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when its parent dies.

    Why: a SIGKILLed or OOM-killed corral runs no cleanup, and its llama-server would keep
    the model in (GPU) memory with no one to stop it. Note the kernel sends the signal
    when the *thread* that forked exits; asyncio forks from the event loop's thread, which
    lives as long as corral serves. None where prctl is unavailable.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            # The parent died before the setting took effect: it will never fire.
            os._exit(1)

    return hook


def reap_strays(owner: str, grace: float = 3.0) -> list[int]:
    """Kill processes marked ``CORRAL_CHILD=<owner>`` whose corral is gone; return their pids.

    A marked process is kept while the corral recorded in its ``CORRAL_PARENT`` is among its
    ancestors (that corral is alive and still owns it, grandchildren included); without that
    record, while its parent is anything but init. The owner id (``server.owner_id``: a hash
    of the config's identity and port) is stable across restarts of one instance and differs
    between instances, so one corral never reaps another's children. Processes that cannot
    be inspected (another user's, or gone meanwhile) are skipped quietly.
    """
    found = [p for p in psutil.process_iter() if _is_stray(p, owner)]
    for proc in found:
        _send(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        _send(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace)
    pids = sorted(p.pid for p in found)
    if pids:
        log.warning("reaped %d stray process(es) of owner %s: %s", len(pids), owner, pids)
    return pids


def _is_stray(proc: psutil.Process, owner: str) -> bool:
    if proc.pid == os.getpid():
        return False
    try:
        env = proc.environ()
        if env.get(MARKER) != owner:
            return False
        recorded = env.get(PARENT_MARKER, "")
        if recorded.isdigit():
            return int(recorded) not in {p.pid for p in proc.parents()}
        return proc.ppid() == 1
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return False


def kill_escaped(token: str) -> list[int]:
    """SIGKILL every process marked ``CORRAL_SPAWN=<token>``; return their pids.

    A child's stop signals its process group, which a grandchild leaves with ``setsid`` (a
    ``cmd`` wrapper that daemonises its server). Its environment still carries the mark,
    unless it cleared it (``env -i``): such a process, or another user's, stays; under
    systemd, the unit's cgroup still ends it when corral stops.
    """
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            if proc.pid != os.getpid() and proc.environ().get(SPAWN_MARKER) == token:
                found.append(proc)
    for proc in found:
        _send(proc, signal.SIGKILL)
    return sorted(p.pid for p in found)


def _send(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.AccessDenied, psutil.NoSuchProcess):
        proc.send_signal(sig)
