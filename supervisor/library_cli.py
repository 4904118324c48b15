"""``corral pull`` by name, ``corral lock`` and ``corral search``: the model library's commands.

Owns their options and what a person reads: progress on stderr, the files saved, the
defaults recorded, a missing chat template, the lock written. Registries and downloads are
``pull``'s. ``cli`` imports this module so that the commands join its group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.generator import loader, model_source
from corral.generator.cli import cli, fail
from corral.generator.problems import ConfigError
from corral.supervisor.pull import library, lock, ollama_registry, sources

REGISTRY_HELP = (
    "Ollama registry base URL (default: env CORRAL_OLLAMA_REGISTRY, else "
    "https://registry.ollama.ai)."
)


def is_library_source(text: str) -> bool:
    """True for a short name or ``hf:owner/repo[:QUANT]``: what the library resolves."""
    try:
        parsed = model_source.parse(text)
    except model_source.SourceSyntaxError:
        return False
    return isinstance(parsed, model_source.OllamaName | model_source.HubQuant)


def pull_from_library(source: str, folder: Path, registry: str | None, force: bool) -> None:
    """``corral pull NAME``: resolve, download every file, say what came with it."""

    def say(message: str) -> None:
        click.echo(message, err=True)

    try:
        plan = library.resolve(source, registry)
        pulled = library.fetch(plan, folder, force=force, say=say)
        warning = library.template_warning(folder / plan.model_file.name)
    except library.ERRORS as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for done in pulled:
        click.echo(done.summary())
    for note in plan.notes:
        click.echo(f"note: {note}")
    recorded = library.defaults_note(plan, folder / f"{plan.stem}{model_source.SIDECAR}")
    if recorded is not None:
        click.echo(recorded)
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"serve it with a model entry: {{name: ..., source: {source}}}")


@cli.command("lock")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="config.yaml (or the NixOS module's settings JSON) whose sources to lock.",
)
@click.option("--registry", help=REGISTRY_HELP)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Lock file path.")
def lock_command(config_file: Path, registry: str | None, out: Path | None) -> None:
    """Resolve every model `source` to an exact URL, size and sha256: corral.lock.json.

    Written beside the config unless --out says otherwise. The NixOS module reads it
    (services.corral.lockFile) and fetches each file with pkgs.fetchurl.
    """
    try:
        config = loader.load(config_file, environ={}, discover_models=False)
    except ConfigError as exc:
        fail(exc)
    target = out or config_file.parent / lock.LOCK_NAME
    try:
        built = lock.build(config, registry, say=lambda m: click.echo(m, err=True))
    except (*library.ERRORS, lock.LockError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not built["sources"]:
        click.echo(f"error: {config_file}: no model has a `source`; nothing to lock", err=True)
        sys.exit(1)
    lock.write(built, target)
    click.echo(f"wrote {target} ({len(built['sources'])} sources)")


@cli.command("search")
@click.argument("text")
@click.option("--registry", help=REGISTRY_HELP)
def search_command(text: str, registry: str | None) -> None:
    """List the registry's models and tags whose name contains TEXT.

    Only where the registry offers a listing (the OCI /v2/_catalog); where it does not,
    this says so and exits 1.
    """
    try:
        base, repositories = ollama_registry.catalog(registry)
    except (ollama_registry.RegistryError, sources.SourceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    matches = [r for r in repositories if text.lower() in r.lower()]
    if not matches:
        click.echo(f"error: no model in {base} matches {text!r}", err=True)
        sys.exit(1)
    for repository in matches:
        short = repository.removeprefix(f"{model_source.DEFAULT_NAMESPACE}/")
        found = ollama_registry.tags(base, repository)
        click.echo("\n".join(f"{short}:{tag}" for tag in found) if found else short)
