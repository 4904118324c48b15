"""The generator's commands: ``generate``, ``check`` and ``schema``.

Owns argument parsing and exit codes (2 for a bad config, never a traceback). The supervisor
adds ``serve`` to this same group; this module imports nothing from it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from corral.generator import dump, idle_exit, loader
from corral.generator.access import KeyFileError, read_key_file
from corral.generator.keys import spellings
from corral.generator.lazy_group import LazyGroup
from corral.generator.model_settings import ModelConfig
from corral.generator.nix_names import relocate
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.generator.unit_settings import ACCELERATIONS, ServiceSettings

#: Exit code for a config that failed validation (click uses 2 for usage errors too).
EXIT_INVALID = 2

#: ``check``'s memory report, handed in by whoever can estimate (the supervisor, through
#: ``cli(obj={MEMORY_CHECK: ...})``): config and --fit in, (lines to print, problems) out.
MemoryCheck = Callable[[Config, bool], tuple[list[str], list[str]]]
MEMORY_CHECK = "memory_check"
#: ``check``'s warnings (no chat template, …): config in, lines out ("warning: …" to stderr).
WarningsCheck = Callable[[Config], list[str]]
WARNINGS_CHECK = "warnings_check"
#: ``check --probe``: config and --model in, (lines, whether every model passed) out.
Probe = Callable[[Config, str | None], tuple[list[str], bool]]
PROBE = "probe"
EXIT_PROBE_FAILED = 1  # a template's markers are not special tokens


def fail(exc: ConfigError) -> NoReturn:
    """Print every problem, then exit 2: a person reads this, not a stack trace."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INVALID)


@click.group(cls=LazyGroup)
@click.version_option(package_name="corral")
def cli() -> None:
    """corral: local GGUF models, loaded on demand, behind one OpenAI/Ollama endpoint."""


assert isinstance(cli, LazyGroup)
cli.lazy["rpc-worker"] = "corral.generator.rpc_worker:command"
cli.lazy["import-modelfile"] = "corral.generator.modelfile_import:command"


@cli.command()
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSON (or YAML) settings: the NixOS module's camelCase or config.yaml's snake_case.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write config.yaml and the unit file(s) into.",
)
@click.option("--unit-name", help="systemd unit name, without .service (default corral).")
@click.option("--exec-start", help="ExecStart command line (default: corral serve --config …).")
@click.option("--user", help="Run as this user instead of a DynamicUser.")
@click.option(
    "--acceleration",
    type=click.Choice(ACCELERATIONS),
    help="GPU kind; decides which devices the unit may open.",
)
@click.option(
    "--config-path",
    type=click.Path(path_type=Path),
    help="Where config.yaml will live at run time (default: OUT/config.yaml).",
)
@click.option(
    "--locations",
    "locations_json",
    help='JSON: a location prefix and what to print for it instead, e.g. {"": "services.corral."}, '
    "so that errors name the options the settings came from (the NixOS module passes it).",
)
def generate(
    settings_file: Path,
    out: Path,
    unit_name: str | None,
    exec_start: str | None,
    user: str | None,
    acceleration: str | None,
    config_path: Path | None,
    locations_json: str | None,
) -> None:
    """Validate settings and write config.yaml plus hardened systemd unit(s)."""
    source = str(settings_file)
    locations = _locations(locations_json)
    try:
        raw = loader.read_file(settings_file)
    except ConfigError as exc:
        fail(exc)
    # normalize() only for its null rule here: validate() needs the raw shape to word its
    # locations the way the NixOS module's attribute set reads.
    service_raw: Any = loader.normalize(raw).get("service") or {}
    raw.pop("service", None)
    # Validate both halves before failing, so that one run reports every problem.
    problems: list[str] = []
    try:
        config = loader.validate(raw, source)
    except ConfigError as exc:
        problems += exc.problems
    if isinstance(service_raw, dict):
        flags = {
            "name": unit_name,
            "exec_start": exec_start,
            "user": user,
            "acceleration": acceleration,
        }
        runtime_config = config_path or out / "config.yaml"
        if config_path is not None or not any(k in service_raw for k in spellings("config_path")):
            flags["config_path"] = str(runtime_config.absolute())
        for key, value in flags.items():
            if value is not None:
                # A flag replaces the setting under whichever spelling the file used.
                for spelling in spellings(key):
                    service_raw.pop(spelling, None)
                service_raw[key] = value
        try:
            service = ServiceSettings.from_raw(service_raw, source)
        except ConfigError as exc:
            problems += exc.problems
    else:
        problems.append(f"service: must be a mapping, got {service_raw!r}")
    if problems:
        fail(ConfigError(relocate(problems, locations), source))
    try:
        # Rendered before anything is written, so a failure leaves no half-generated folder.
        from corral.generator.units import render_units  # jinja2: only `generate` needs it

        units = render_units(service, config)
    except ConfigError as exc:
        fail(ConfigError(relocate(exc.problems, locations), exc.source))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump.to_yaml(config, settings_file.name), encoding="utf-8")
    written = ["config.yaml"]
    for filename, text in units.items():
        (out / filename).write_text(text, encoding="utf-8")
        written.append(filename)
    click.echo(f"wrote {', '.join(written)} to {out}")


def _locations(text: str | None) -> dict[str, str]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"must be a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise click.BadParameter(f"must be a JSON object of strings, got {text!r}")
    return value


@cli.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--fit",
    is_flag=True,
    help="Fail when a model, or the persistent models together, exceed a declared budget.",
)
@click.option(
    "--probe",
    is_flag=True,
    help="Start each model and test its chat template against it; fail when its turn "
    "markers are not special tokens.",
)
@click.option("--model", "only", help="With --probe: only this model (a name or alias).")
@click.pass_context
def check(ctx: click.Context, config_file: Path, fit: bool, probe: bool, only: str | None) -> None:
    """Validate CONFIG_FILE (with the environment's overrides) and summarise each model;
    warnings go to stderr and leave the exit code alone."""
    try:
        config = loader.load(config_file)
    except ConfigError as exc:
        fail(exc)
    hooks = ctx.obj or {}
    memory_check: MemoryCheck | None = hooks.get(MEMORY_CHECK)
    if fit and memory_check is None:
        raise click.UsageError("--fit needs the memory estimator: run it as `corral check`")
    run_probe: Probe | None = hooks.get(PROBE)
    if probe and run_probe is None:
        raise click.UsageError("--probe needs llama-server: run it as `corral check`")
    if only is not None and not probe:
        raise click.UsageError("--model goes with --probe")
    key_file_check(config)
    click.echo(
        f"{config_file}: ok, {len(config.models)} model(s), listening on "
        f"{config.host}:{config.port}"
    )
    for model in config.models:
        click.echo(summary(model, config))
        if model.path is not None and not model.path.exists():
            click.echo(
                f"warning: {model.name}: {model.path} does not exist (yet); "
                "requests for it will fail until it is downloaded",
                err=True,
            )
    warnings_check: WarningsCheck | None = hooks.get(WARNINGS_CHECK)
    if warnings_check is not None:
        _say(warnings_check(config))
    for note in idle_exit.notes(config):
        click.echo(f"warning: {note}", err=True)
    if memory_check is not None:
        lines, problems = memory_check(config, fit)
        for line in lines:
            click.echo(line)
        if problems:
            fail(ConfigError(problems, str(config_file)))
    if probe and run_probe is not None:
        lines, passed = run_probe(config, only)
        _say(lines)
        if not passed:
            sys.exit(EXIT_PROBE_FAILED)


def _say(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=line.startswith(("warning:", "error:")))


def key_file_check(config: Config) -> None:
    """``api_key_file`` read as ``serve`` reads it: one with no key in it fails the check.
    One that is not there (yet), or not readable here (a systemd credential), is a warning:
    ``serve`` reads it where it runs."""
    path = config.api_key_file
    if path is None:
        return
    if not path.exists():
        click.echo(
            f"warning: api_key_file: {path} does not exist (yet); serve refuses to "
            "start without it",
            err=True,
        )
        return
    try:
        read_key_file(path)
    except KeyFileError as exc:
        if not path.is_file() or os.access(path, os.R_OK):
            fail(ConfigError([f"api_key_file: {exc}"]))
        click.echo(f"warning: api_key_file: {exc}; serve must be able to read it", err=True)


def summary(model: ModelConfig, config: Config) -> str:
    """One line per model: name, what it runs, and the settings that decide its cost."""
    runs = str(model.path) if model.path is not None else " ".join(model.cmd or [])
    ttl = model.ttl if model.ttl is not None else config.default_ttl
    parts = [f"ctx={model.context_size}", f"ttl={ttl}s"]
    if model.gpu_layers is not None:
        parts.append(f"ngl={model.gpu_layers}")
    if model.aliases:
        parts.append(f"aliases={','.join(model.aliases)}")
    if model.group:
        parts.append(f"group={model.group}")
    return f"  {model.name}: {runs} ({' '.join(parts)})"


@cli.command()
def schema() -> None:
    """Print config.yaml's JSON Schema."""
    click.echo(json.dumps(json_schema(), indent=2))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml, as committed in generator/config.schema.json."""
    schema = Config.model_json_schema()
    # Editors and validators pick the draft from $schema; pydantic writes 2020-12.
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "corral config.yaml",
    }
