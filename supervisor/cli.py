"""The ``corral`` command: the generator's commands plus ``serve``.

Owns ``serve``'s options and their precedence over the config (flags, then environment, then
file). The console script points here because only this side may import both packages.
"""

from __future__ import annotations

from pathlib import Path

import click

from corral.generator import loader
from corral.generator.cli import cli, fail
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor import server


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
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(config_file: Path | None, host: str | None, port: int | None, log_level: str) -> None:
    """Serve the configured models on one OpenAI- and Ollama-compatible endpoint."""
    server.setup_logging(log_level)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}

    def load() -> Config:
        return loader.load(config_file).model_copy(update=overrides)

    try:
        config = load()
    except ConfigError as exc:
        fail(exc)
        return
    identity = str(config_file.resolve()) if config_file else f"env:{config.models_path}"
    server.run(config, load, identity)


def main() -> None:
    cli()
