"""The vocabulary of one child's lifecycle: its states, the moves between them, its errors,
and what the pool needs of a child (``Child``).

Owns the closed set of states a child process can be in, the transitions allowed between
them (as data, so a test or a reader can see the whole machine at once), the exceptions
that a lifecycle raises and the ``Child`` interface, apart from its implementation
(``process.ChildProcess``) so that tests can give the pool fakes. It does not run processes
(see ``process``) or decide which model should run (``scheduler`` does).

The machine::

    STOPPED -> STARTING -> READY -> STOPPING -> STOPPED
                  |  \\------------^    |
                  v                    v
                FAILED <------------ (crash while READY)
                  |
                  +--> STARTING (try again) or STOPPED (unloaded by hand)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from corral.generator.model_settings import ModelConfig


class ProcessState(enum.Enum):
    """Where one child is in its life. ``public`` is the word the HTTP API shows."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"

    @property
    def public(self) -> str:
        """The state as clients see it: unloaded, loading, ready, unloading or failed."""
        return _PUBLIC[self]

    @property
    def live(self) -> bool:
        """A process exists and may hold memory: loading, ready or stopping."""
        return self in (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING)


_PUBLIC: Mapping[ProcessState, str] = {
    ProcessState.STOPPED: "unloaded",
    ProcessState.STARTING: "loading",
    ProcessState.READY: "ready",
    ProcessState.STOPPING: "unloading",
    ProcessState.FAILED: "failed",
}

#: Every legal move. STARTING -> STOPPING is a load cancelled by a stop (swap, client gone);
#: FAILED -> STOPPED is an explicit unload of a child that already died.
TRANSITIONS: Mapping[ProcessState, frozenset[ProcessState]] = {
    ProcessState.STOPPED: frozenset({ProcessState.STARTING}),
    ProcessState.STARTING: frozenset(
        {ProcessState.READY, ProcessState.FAILED, ProcessState.STOPPING}
    ),
    ProcessState.READY: frozenset({ProcessState.STOPPING, ProcessState.FAILED}),
    ProcessState.STOPPING: frozenset({ProcessState.STOPPED}),
    ProcessState.FAILED: frozenset({ProcessState.STARTING, ProcessState.STOPPED}),
}


class IllegalTransition(RuntimeError):
    """A move the state machine does not allow: always a bug in the caller, never user input."""


def transition(name: str, current: ProcessState, target: ProcessState) -> ProcessState:
    """Return ``target`` if ``current -> target`` is allowed, else raise IllegalTransition."""
    allowed = TRANSITIONS[current]
    if target not in allowed:
        shown = ", ".join(sorted(s.value for s in allowed))
        raise IllegalTransition(
            f"model {name!r}: cannot go from {current.value} to {target.value}; "
            f"allowed from {current.value}: {shown}"
        )
    return target


class StartError(Exception):
    """A child that did not become ready: it exited, timed out, or could not be run.

    ``stderr_tail`` holds the child's last output lines, which usually name the cause
    (a missing file, an unknown flag, not enough memory).
    """

    def __init__(
        self,
        model_name: str,
        reason: str,
        stderr_tail: Sequence[str],
        exit_code: int | None = None,  # negative: the signal that ended it (-9: OOM killer?)
    ) -> None:
        self.model_name = model_name
        self.exit_code = exit_code
        self.reason = reason
        self.stderr_tail = list(stderr_tail)
        message = f"model {model_name!r} failed to start: {reason}"
        if self.stderr_tail:
            message += "; last lines: " + " | ".join(self.stderr_tail[-5:])
        super().__init__(message)


class Child(Protocol):
    """One model's server as the pool drives it: ``process.ChildProcess``, or a test's fake.

    ``start`` returns once the child is READY (joining a start in progress) or raises
    StartError; ``stop`` returns once it is STOPPED. Both are safe to call concurrently.
    """

    name: str

    @property
    def state(self) -> ProcessState: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def port(self) -> int | None: ...

    @property
    def base_url(self) -> str: ...

    #: The key the child demands on every request but ``/health``; None: it demands none.
    api_key: str | None

    async def start(self) -> None: ...

    async def stop(self, reason: str, grace: float = 10.0) -> None: ...

    def kill_group_now(self) -> None: ...

    def stderr_tail(self, n: int = 20) -> list[str]: ...

    def lines_since(self, mark: int) -> tuple[list[str], int]:
        """Its output lines after the first ``mark`` ever written, and the new mark (follow
        a log: start at 0, pass the mark back)."""
        ...

    def buffer_lines(self) -> list[str]:
        """The lines it logged while loading that say where it went: buffer sizes, layers
        offloaded, no usable GPU (``learned`` and ``offload`` read them)."""
        ...


#: Called when a READY child exits on its own (a crash), with its exit code.
ExitHook = Callable[[Child, int], None]
#: Makes the child for a model (not started yet); the pool's default runs a process.
ChildFactory = Callable[[ModelConfig, ExitHook], Child]
