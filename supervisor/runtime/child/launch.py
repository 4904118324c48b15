"""The pool's default ``ChildFactory``: a ``ChildProcess`` running llama-server (or a model's
``cmd``) for a model.

Owns finding the llama-server binary once per config (a failure is the model's 503, not a
crash) and wiring ``command``'s argv and env into a ``process.ChildProcess``. It starts
nothing itself: the pool calls ``start``.
"""

from __future__ import annotations

import os

from corral.generator.model_settings import ModelConfig
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.errors import StartFailed
from corral.supervisor.runtime.child import command
from corral.supervisor.runtime.child.process import ChildProcess
from corral.supervisor.runtime.child.readiness import LLAMA_SERVER_READY_LINE
from corral.supervisor.runtime.child.states import ExitHook
from corral.supervisor.runtime.memory import offload


class Launcher:
    """Makes a model's child the way ``config`` says; the binary is looked up on first use."""

    def __init__(self, config: Config, owner: str) -> None:
        self.config = config
        self.owner = owner
        self._binary: str | None = None

    def __call__(self, model: ModelConfig, on_exit: ExitHook) -> ChildProcess:
        binary = self._llama_server() if model.cmd is None else ""
        # Every child, a ``cmd`` one too, gets a key: a llama-server it runs honours it, and a
        # server that ignores it is only sent an Authorization header it does not read.
        key = command.child_key(model)
        env = command.build_env(model, os.environ, self.owner, key)

        # Verbosity 4 where a GPU is in play: only then does llama-server say where the model
        # went (layers offloaded, buffers per device), read after the load.
        learn = offload.watched(model, bool(self.config.devices))

        def argv(port: int) -> list[str]:
            return command.build_argv(model, binary, port, learn)

        return ChildProcess(
            model.name,
            argv,
            env,
            self.config.health_timeout,
            on_exit=on_exit,
            api_key=key,
            # llama-server says when it serves; a ``cmd`` server may say nothing: polled.
            ready_line=LLAMA_SERVER_READY_LINE if model.cmd is None else None,
        )

    def _llama_server(self) -> str:
        if self._binary is None:
            try:
                self._binary = command.resolve_llama_server(self.config.llama_server)
            except ConfigError as exc:
                raise StartFailed(f"cannot start a model: {exc}") from exc
        return self._binary
