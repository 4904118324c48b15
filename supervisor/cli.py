"""The ``corral`` command: the generator's commands plus ``serve`` and ``pull`` (and, from
their own modules, the library's commands and ``status``/``logs``).

Owns ``serve``'s options and their precedence over the config (flags, then environment, then
file), and ``pull``'s choice of folder (``--dest``, else models_path). The console script
points here because only this side may import both packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.generator import loader
from corral.generator.cli import MEMORY_CHECK, PROBE, WARNINGS_CHECK, cli, fail
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor import fit, library_cli, probe
from corral.supervisor import status_cli as status_cli  # its commands join the group
from corral.supervisor.pull import download, inventory, sources
from corral.supervisor.runtime import checks


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
    # Imported here: the ASGI stack costs ~2 s of start-up that `pull` and `check` don't need.
    from corral.supervisor import server

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
    try:
        server.run(config, load, identity)
    except ConfigError as exc:
        fail(exc)


@cli.command("pull")
@click.argument("source", required=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="config.yaml whose models_path receives the file (env MODELS_PATH overrides it).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to download into, instead of models_path.",
)
@click.option("--name", help="Save under this file name (it must end in .gguf).")
@click.option("--sha256", help="Expected sha256 (64 hex digits); on a mismatch nothing is kept.")
@click.option("--force", is_flag=True, help="Download again even if the file is there.")
@click.option("--registry", help=library_cli.REGISTRY_HELP)
@click.option(
    "--list",
    "show_list",
    is_flag=True,
    help="Show the folder's GGUF files, and the config's models whose file is missing.",
)
def pull_command(
    source: str | None,
    config_file: Path | None,
    dest: Path | None,
    name: str | None,
    sha256: str | None,
    force: bool,
    registry: str | None,
    show_list: bool,
) -> None:
    """Download a GGUF into models_path. SOURCE: an https:// URL, hf:owner/repo/file.gguf,
    hf:owner/repo:QUANT, or a model of Ollama's library (ollama:NAME:TAG, or NAME:TAG).

    The file appears only once it is whole (and matches --sha256). An interrupted download
    leaves NAME.gguf.part, which the same command resumes.
    """
    config: Config | None = None
    # Without --dest the folder comes from the config or MODELS_PATH; with both, the config
    # still says which models --list should find.
    if config_file is not None or dest is None:
        try:
            config = loader.load(config_file, discover_models=False)
        except ConfigError as exc:
            fail(exc)
    folder = dest if dest is not None else config.models_path if config is not None else None
    if folder is None:
        raise click.UsageError(
            "no models folder: pass --dest DIR, or --config FILE that sets models_path, "
            "or set MODELS_PATH"
        )
    if show_list:
        if source is not None:
            raise click.UsageError("--list takes no SOURCE")
        for line in inventory.scan(folder, config).lines(folder):
            click.echo(line)
        return
    if source is None:
        raise click.UsageError("missing SOURCE: an https:// URL or hf:owner/repo/file.gguf")
    if library_cli.is_library_source(source):
        if name is not None or sha256 is not None:
            raise click.UsageError("--name and --sha256 are for URLs; the library names files")
        library_cli.pull_from_library(source, folder, registry, force)
        return
    try:
        origin = sources.parse(source)
        target = folder / sources.file_name(origin, name)
        expected = sources.check_sha256(sha256) if sha256 is not None else None
        pulled = download.pull(
            origin, target, sha256=expected, force=force, say=lambda m: click.echo(m, err=True)
        )
    except (sources.SourceError, download.PullError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(pulled.summary())


def main() -> None:
    # The generator's `check` prints each model's memory through this hook: only this side
    # may import both packages.
    cli(
        obj={
            MEMORY_CHECK: fit.memory_check,
            WARNINGS_CHECK: checks.check_report,
            PROBE: probe.probe_check,
        }
    )
