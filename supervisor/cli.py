"""The ``corral`` command: the generator's commands plus ``serve`` (and, from their own
modules, imported only when run: ``pull``, the library's commands and ``status``/``logs``).

Owns ``serve``'s options and their precedence over the config (flags, then environment, then
file), and which module holds each of the supervisor's other commands. The console script
points here because only this side may import both packages. ``corral serve`` imports no
other command's modules: systemd may start it on a connection that waits for it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from corral.generator import loader
from corral.generator.cli import MEMORY_CHECK, PROBE, WARNINGS_CHECK, cli, fail
from corral.generator.problems import ConfigError
from corral.generator.settings import Config

# Imported when one of them runs (or for --help): each module adds its commands to `cli`.
cli.lazy.update(
    {
        "pull": "corral.supervisor.pull_cli:pull_command",
        "lock": "corral.supervisor.library_cli:lock_command",
        "search": "corral.supervisor.library_cli:search_command",
        "status": "corral.supervisor.status_cli:status_command",
        "logs": "corral.supervisor.status_cli:logs_command",
    }
)


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="config.yaml; without it, every *.gguf in MODELS_PATH is served.",
)
@click.option("--host", help="Address to listen on (overrides config and HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (overrides config and PORT).")
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    help="Exit after this many seconds with no model loaded and no connection (0: never; "
    "overrides idle_exit).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    idle_exit: float | None,
    log_level: str,
) -> None:
    """Serve the configured models on one OpenAI- and Ollama-compatible endpoint.

    Started by systemd's socket activation (LISTEN_FDS), it serves on the sockets passed.
    """
    # Imported here: the ASGI stack costs ~2 s of start-up that `pull` and `check` don't need.
    from corral.supervisor import server
    from corral.supervisor.http import listen

    server.setup_logging(log_level)
    try:
        inherited = listen.inherited()
    except listen.ListenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    wanted = {"host": host, "port": port, "idle_exit": idle_exit}
    overrides = {k: v for k, v in wanted.items() if v is not None}
    if inherited:
        # The sockets are the address: the Host check, the owner id and the warnings read it.
        if host is not None or port is not None:
            server.log.info(
                "--host/--port ignored: serving on the sockets systemd passed (%s)",
                listen.describe(inherited),
            )
        overrides["host"], overrides["port"] = listen.address(inherited)

    def load() -> Config:
        return loader.load(config_file).model_copy(update=overrides)

    try:
        config = load()
    except ConfigError as exc:
        fail(exc)
        return
    identity = str(config_file.resolve()) if config_file else f"env:{config.models_path}"
    try:
        server.run(config, load, identity, inherited)
    except ConfigError as exc:
        fail(exc)


def _when_called(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported on its first call: `check` needs the estimator, the checks
    and the probe; `serve` needs none of them."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


def main() -> None:
    # The generator's `check` prints each model's memory through this hook: only this side
    # may import both packages.
    cli(
        obj={
            MEMORY_CHECK: _when_called("corral.supervisor.fit", "memory_check"),
            WARNINGS_CHECK: _when_called("corral.supervisor.runtime.checks", "check_report"),
            PROBE: _when_called("corral.supervisor.probe", "probe_check"),
        }
    )
