"""One child process's life: spawn on a free port, see it become ready, stop it, notice a crash.

Owns a single child (llama-server or a model's ``cmd``) and its process group: the port it
listens on, its state (see ``states``) and the signals sent to it. Its output is kept by
``output``; when it counts as ready is ``readiness``'s rule. It does not decide when a
model should run or stop (``scheduler`` does), and it does not proxy requests to it.

Callers ``await start()`` and ``await stop()``; both are safe to call concurrently and
repeatedly. A crash while READY is reported through ``on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Mapping

from corral.supervisor.runtime.child import readiness, strays
from corral.supervisor.runtime.child.health import free_port
from corral.supervisor.runtime.child.leader import LeaderProtocol
from corral.supervisor.runtime.child.output import Output
from corral.supervisor.runtime.child.readiness import Outcome
from corral.supervisor.runtime.child.states import ProcessState, StartError, transition
from corral.supervisor.runtime.child.strays import parent_death_hook

BIND_ATTEMPTS = 3
_BIND_FAILURE = re.compile(r"address already in use|couldn't bind|bind failed|EADDRINUSE", re.I)
log = logging.getLogger("corral")


class ChildProcess:
    """One child and its process group. See the module docstring."""

    def __init__(
        self,
        name: str,
        argv_for_port: Callable[[int], list[str]],
        env: Mapping[str, str],
        health_timeout: float,
        *,
        log_lines: int = 200,
        on_exit: Callable[[ChildProcess, int], None] | None = None,
        api_key: str | None = None,
        ready_line: str | None = None,
    ) -> None:
        self.name = name
        self.api_key = api_key  # what the child demands (its env has it), sent by the proxy
        self._argv_for_port = argv_for_port
        # The spawn's mark: what left the process group is found by it (strays.kill_escaped).
        self._token = secrets.token_hex(8)
        self._env = {**env, strays.SPAWN_MARKER: self._token}
        self._health_timeout = health_timeout
        self._on_exit = on_exit
        # With a ready line, readiness is the line then one /health; without (a ``cmd``
        # server that may print none), /health is polled (see ``readiness``).
        self._output = Output(name, log_lines, ready_line)
        self._stop_asked = asyncio.Event()  # wakes a wait for readiness at once
        self.buffer_lines = self._output.buffer_lines  # what ``learned`` measures a load by
        self.lines_since = self._output.since  # what ``/logs/<model>/stream`` follows
        self._state = ProcessState.STOPPED
        self._proc: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Future[int] | None = None  # the leader's exit code
        self._transport: asyncio.SubprocessTransport | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._spawned = 0.0
        self.ready_ms: int | None = None  # spawn to ready, last successful start

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def stderr_tail(self, n: int = 20) -> list[str]:
        """The child's last ``n`` output lines (stdout and stderr, interleaved as written)."""
        return self._output.tail(n)

    async def start(self) -> None:
        """Run the child until it is ready; join a start in progress; return at once if READY.

        Raises StartError (state FAILED) when it exits or times out first; the next call
        starts from scratch. Cancelling one caller does not cancel the load for the others.
        """
        if self._state is ProcessState.READY:
            return
        if self._state is ProcessState.STOPPING and self._stop_task is not None:
            await asyncio.shield(self._stop_task)
        if self._state is not ProcessState.STARTING:
            self._move(ProcessState.STARTING)
            self._start_task = asyncio.create_task(self._run_start())
            self._start_task.add_done_callback(_retrieve)
        assert self._start_task is not None
        await asyncio.shield(self._start_task)

    async def wait_ready(self) -> None:
        """Wait for a start in progress; raise StartError unless the child ends up READY."""
        if self._state is ProcessState.STARTING and self._start_task is not None:
            await asyncio.shield(self._start_task)
        if self._state is not ProcessState.READY:
            reason = f"not running (state {self._state.value})"
            raise StartError(self.name, reason, self.stderr_tail())

    async def stop(self, reason: str, grace: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; a no-op when not running."""
        if self._state is ProcessState.STOPPED:
            return
        if self._state is ProcessState.FAILED:
            self._move(ProcessState.STOPPED)  # already dead and reaped: nothing to signal
            return
        if self._state is not ProcessState.STOPPING:
            self._move(ProcessState.STOPPING)
            self._stop_asked.set()
            self._stop_task = asyncio.create_task(self._run_stop(reason, grace))
            self._stop_task.add_done_callback(_retrieve)
        assert self._stop_task is not None
        await asyncio.shield(self._stop_task)

    def kill_group_now(self) -> None:
        """SIGKILL the whole group at once; for atexit and signal handlers, which cannot await."""
        # Not once STOPPED or FAILED: the group is dead then, and its id may be reused.
        if self._state in (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING):
            self._signal(signal.SIGKILL)

    async def _run_start(self) -> None:
        try:
            await self._attempts()
        except StartError:
            raise
        except BaseException:
            # argv_for_port raised, or the loop is closing: never stay STARTING.
            if self._state is ProcessState.STARTING:
                self._signal(signal.SIGKILL)
                self._move(ProcessState.FAILED)
            raise

    async def _attempts(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._health_timeout
        for attempt in range(1, BIND_ATTEMPTS + 1):
            port = free_port()
            argv = self._argv_for_port(port)
            mark = self._output.total
            await self._spawn(argv, port)
            outcome = await readiness.until_ready(
                port,
                deadline,
                self._exited,
                self._output,
                self._stop_asked,
                stopping=lambda: self._state is ProcessState.STOPPING,
            )
            if outcome is Outcome.READY:
                self.ready_ms = round((loop.time() - self._spawned) * 1000)
                self._move(ProcessState.READY)
                if self._output.heard.is_set():
                    after = (time.monotonic() - self._output.heard_at) * 1000
                    log.info(
                        "ready %s in %d ms (%.1f ms after its ready line)",
                        self.name,
                        self.ready_ms,
                        after,
                    )
                else:
                    log.info("ready %s in %d ms", self.name, self.ready_ms)
                return
            if outcome is Outcome.STOPPING:  # stop() owns the process from here
                raise StartError(self.name, "stopped while loading", self.stderr_tail())
            await self._kill_and_reap()
            since = self.stderr_tail(min(self._output.total - mark, 20))
            if outcome is Outcome.EXITED:
                if attempt < BIND_ATTEMPTS and any(_BIND_FAILURE.search(x) for x in since):
                    # Another program took the port between free_port() and the child's bind.
                    log.warning("retry %s: port %d was taken", self.name, port)
                    continue
                reason = f"exited with code {self._code()} during load"
            else:
                reason = f"not ready after {self._health_timeout:g} s"
            raise self._failed(reason, since)

    async def _spawn(self, argv: list[str], port: int) -> None:
        loop = asyncio.get_running_loop()
        self._spawned = loop.time()
        self._output.begin()
        self._stop_asked.clear()
        exited: asyncio.Future[int] = loop.create_future()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: LeaderProtocol(loop, lambda code: self._on_leader_exit(exited, code)),
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
                # Its own group, so a stop reaches grandchildren (a cmd wrapper's server) too.
                start_new_session=True,
                preexec_fn=parent_death_hook(),
            )
        except OSError as exc:
            raise self._failed(f"cannot run {argv[0]!r}: {exc.strerror}", []) from None
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        self._proc, self._port, self._exited = proc, port, exited
        self._transport = transport
        assert proc.stdout is not None
        self._reader_task = asyncio.create_task(self._output.drain(proc.stdout))
        log.info("start %s pid=%d port=%d", self.name, proc.pid, port)

    async def _run_stop(self, reason: str, grace: float) -> None:
        began = time.monotonic()
        if self._start_task is not None and not self._start_task.done():
            await asyncio.wait({self._start_task})  # it sees STOPPING within one poll
        exited = self._exited
        if exited is not None and not exited.done():
            self._signal(signal.SIGTERM)
            await asyncio.wait({exited}, timeout=grace)
            if not exited.done():
                log.warning("kill %s: still running %g s after SIGTERM", self.name, grace)
        await self._kill_and_reap()
        code = self._code()
        took = round((time.monotonic() - began) * 1000)
        log.info(
            "stop %s reason=%s pid=%s code=%s in %d ms", self.name, reason, self.pid, code, took
        )
        self._move(ProcessState.STOPPED)

    async def _kill_and_reap(self) -> None:
        # SIGKILL even after the leader exited: a grandchild may outlive it and hold the
        # port, the GPU memory or the pipe (which would keep the reader waiting forever).
        self._signal(signal.SIGKILL)
        if self._exited is not None:
            await self._exited
        if self._reader_task is not None:
            await asyncio.wait({self._reader_task}, timeout=1.0)
        await self._kill_escaped()
        if self._transport is not None and not self._transport.is_closing():
            # A grandchild that left the group still holds the pipe: stop reading it.
            self._transport.close()

    async def _kill_escaped(self) -> None:
        # In a thread: it reads every process's environment (about 10 ms for 300).
        pids = await asyncio.to_thread(strays.kill_escaped, self._token)
        if pids:
            log.warning("stop %s: killed %s, which left its process group", self.name, pids)

    def _on_leader_exit(self, exited: asyncio.Future[int], code: int) -> None:
        exited.set_result(code)
        if exited is not self._exited or self._state is not ProcessState.READY:
            return  # expected: a stop, or a failed start that _run_start reports itself
        # The leader is gone, but a grandchild could still hold the port and the pipe.
        self._signal(signal.SIGKILL)
        asyncio.get_running_loop().run_in_executor(None, strays.kill_escaped, self._token)
        log.warning("stop %s reason=crash pid=%s code=%d", self.name, self.pid, code)
        self._move(ProcessState.FAILED)
        if self._on_exit is not None:
            self._on_exit(self, code)

    def _code(self) -> int | None:
        return self._exited.result() if self._exited and self._exited.done() else None

    def _failed(self, reason: str, tail: list[str]) -> StartError:
        if self._state is ProcessState.STARTING:  # not when a stop() took over meanwhile
            self._move(ProcessState.FAILED)
        log.warning("fail %s: %s", self.name, reason)
        return StartError(self.name, reason, tail, exit_code=self._code())

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        # start_new_session made the child a group leader: its pid is the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _move(self, target: ProcessState) -> None:
        self._state = transition(self.name, self._state, target)


def _retrieve(task: asyncio.Task[None]) -> None:
    # The error reaches every awaiting caller; with none left, no "never retrieved" log.
    if not task.cancelled():
        task.exception()
