"""Reading a config from where it lives: a YAML or JSON file, the environment, a models folder.

Owns the order of precedence (file, then the seed's five environment variables and
OLLAMA_MODELS), the two input shapes (the YAML's list of models, the NixOS module's attribute
set keyed by name), what null means (unset), the resolution of relative model paths, the
models discovered in ``models_path`` and Ollama's store joined in (``store_models``). It does
not define the settings (see ``settings``) nor word the errors (see ``problems``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from corral.generator import hf_cache, model_source, ollama_store, store_models
from corral.generator.keys import spellings
from corral.generator.model_settings import ModelConfig
from corral.generator.problems import ConfigError, from_validation_error
from corral.generator.rules import conflicts
from corral.generator.settings import NAME_PATTERN, Config

#: The seed's systemd service sets exactly these; each overrides the matching key.
ENV_OVERRIDES: dict[str, str] = {
    "LLAMA_CPP_BIN": "llama_server",
    "MODELS_PATH": "models_path",
    "HOST": "host",
    "PORT": "port",
    "MODEL_TTL": "default_ttl",
    # Not the seed's: Ollama's own variable, so that a shell set up for Ollama finds its store.
    "OLLAMA_MODELS": "ollama_models",
}

log = logging.getLogger("corral")

#: Values a config may hold once its YAML aliases are expanded: far above any real config
#: (a thousand models is ~50,000), far below a "billion laughs" that would take gigabytes.
MAX_VALUES = 200_000

# llama.cpp's split GGUF files: name-00001-of-00003.gguf, name-00002-of-00003.gguf, ...
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-\d{5}$")


def read_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping; a parse error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], str(path)) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError([f"not valid {kind}: {exc}"], str(path)) from None
    if _larger_than(data, MAX_VALUES):
        raise ConfigError(
            [
                f"holds more than {MAX_VALUES} values once its YAML aliases (*name) are "
                "expanded; write those values out, or nest fewer aliases"
            ],
            str(path),
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"must be a mapping at the top level, got {type(data).__name__}"], str(path)
        )
    return data


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Bring both input shapes to config.yaml's: a list of models, and no null settings.

    The NixOS module hands ``models`` over as an attribute set keyed by name. Nix's
    ``builtins.toJSON`` writes every unset option as null, so null means "unset" (the default)
    for every setting: at the top, in each model, in each group, and in the unit's ``service``
    section that ``corral generate`` reads. Free-form values (``parameters``, ``env``) keep
    their nulls: there they are data, not settings.
    """
    data = _without_nulls(raw)
    models = data.get("models")
    if isinstance(models, Mapping):
        models = [
            {"name": name, **entry} if isinstance(entry, Mapping) else entry
            for name, entry in models.items()
        ]
    if isinstance(models, list):
        data["models"] = [_without_nulls(m) if isinstance(m, Mapping) else m for m in models]
    groups = data.get("groups")
    if isinstance(groups, Mapping):
        data["groups"] = {
            k: _without_nulls(g) if isinstance(g, Mapping) else g for k, g in groups.items()
        }
    peers = data.get("peers")
    if isinstance(peers, Mapping):
        data["peers"] = {
            k: _without_nulls(p) if isinstance(p, Mapping) else p for k, p in peers.items()
        }
    if isinstance(data.get("service"), Mapping):
        data["service"] = _without_nulls(data["service"])
    return data


def apply_env(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The seed's environment variables win over the file's keys (an empty one is unset)."""
    data = dict(raw)
    for variable, key in ENV_OVERRIDES.items():
        value = environ.get(variable)
        if value:
            for spelling in spellings(key):
                data.pop(spelling, None)
            data[key] = value
    return data


def env_origins(environ: Mapping[str, str]) -> dict[str, str]:
    """Which keys ``apply_env`` took from the environment: ``{"port": "env PORT"}``."""
    return {key: f"env {var}" for var, key in ENV_OVERRIDES.items() if environ.get(var)}


def validate(
    raw: Mapping[str, Any],
    source: str = "config",
    origins: Mapping[str, str] | None = None,
) -> Config:
    """Validate a mapping, reporting every problem at once as a ConfigError.

    ``origins`` (from ``env_origins``) lets a bad value say that it came from the environment.
    """
    data = normalize(raw)
    problems = [f"{loc}: {msg}" for loc, msg in conflicts(data)]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # The cross-model rules were already checked above, on the raw input, so that they are
        # reported even when field errors stop pydantic before its own model validator.
        fields = from_validation_error(exc, Config, skip={"conflicts"}, origins=origins)
        problems = fields + problems
    if problems:
        raise ConfigError(_nix_locations(problems, raw.get("models")), source)
    return config


def resolve_paths(config: Config) -> Config:
    """Make model paths absolute: ``~`` expanded, relative ones against ``models_path``.

    Without ``models_path`` they resolve against the working directory.
    """
    base = (config.models_path or Path.cwd()).expanduser().absolute()
    models = [
        m.model_copy(update={"path": base / m.path.expanduser()}) if m.path is not None else m
        for m in config.models
    ]
    models = [with_source_files(m, base) for m in models]
    # `base / absolute` is the absolute path itself, so absolute paths pass through unchanged.
    return config.model_copy(update={"models": models, "models_path": config.models_path and base})


def with_source_files(model: ModelConfig, folder: Path) -> ModelConfig:
    """A model with a ``source``: its file where pulls put it (unless ``path`` says), its
    pulled projector as ``--mmproj``, and the library's defaults under the model's own."""
    if model.source is None:
        return model
    source = model_source.parse(model.source)
    path = model.path or model_source.local_path(folder, source)
    mmproj, defaults = model_source.companions(path, source)
    update: dict[str, Any] = {"path": path}
    if mmproj is not None and "--mmproj" not in model.args:
        update["args"] = [*model.args, "--mmproj", str(mmproj)]
    library_parameters = defaults.get("parameters")
    if isinstance(library_parameters, dict) and library_parameters:
        update["parameters"] = {**library_parameters, **model.parameters}
    system = defaults.get("system_prompt")
    if model.system_prompt is None and isinstance(system, str):
        update["system_prompt"] = system
    return model.model_copy(update=update)


def discover(config: Config) -> Config:
    """Add every ``*.gguf`` in ``models_path`` that no entry names, named after its file stem.

    This is what lets the seed's service (environment only, no config file) serve its folder.
    A split model is served once, through its first part, named without the part suffix.
    """
    if config.models_path is None or not config.models_path.is_dir():
        return config
    named = {m.path.resolve() for m in config.models if m.path is not None}
    taken = {name for m in config.models for name in m.names}
    # A file named like a peer's model would make the name route to two places.
    taken |= {n for peer in config.peers.values() for m in peer.entries for n in m.names}
    found = []
    for file in sorted(config.models_path.rglob("*.gguf")):
        split = _SPLIT.match(file.stem)
        # A projector is a part of a vision model, not a model (llama.cpp's router skips it too).
        if (split and split["part"] != "00001") or "mmproj" in file.name:
            continue
        name = _as_name(split["base"] if split else file.stem)
        if file.resolve() in named or name in taken:
            continue
        found.append(ModelConfig(name=name, path=file))
        taken.add(name)
    return config.model_copy(update={"models": [*config.models, *found]})


def discover_all(config: Config) -> Config:
    """``discover``, then the download cache's models (``hf_cache``) under their hf: names."""
    return hf_cache.join(discover(config))


def load(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    discover_models: bool = True,
) -> Config:
    """The config corral runs with: the file (if any), then the environment, then discovery."""
    env = os.environ if environ is None else environ
    raw = read_file(path) if path is not None else {}
    source = str(path) if path is not None else "environment"
    data = apply_env(raw, env)
    root = store_models.root(data)
    if root is None:
        problems = store_models.without_store(data)
        config = validate(data, source, env_origins(env))
        if problems:
            raise ConfigError(problems, source)
        config = resolve_paths(config)
        return discover_all(config) if discover_models else config
    # Ollama's store joins before validation, so presets, names and groups see its models.
    store = ollama_store.read(root)
    for reason in store.skipped:
        log.warning("ollama_models: %s", reason)
    data, served, problems = store_models.merge(data, store, add=discover_models)
    try:
        config = resolve_paths(validate(data, source, env_origins(env)))
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems, source) from None
    config, unknown = store_models.attach(config, served, store)
    if problems or unknown:
        raise ConfigError(problems + unknown, source)
    return discover_all(config) if discover_models else config


def _larger_than(data: Any, limit: int) -> bool:
    """Whether ``data``, its shared (aliased) parts counted each time they appear, holds more
    than ``limit`` values. Stops counting at the limit, so a bomb costs no more than that."""
    count = 0
    pending = [data]
    while pending:
        value = pending.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _without_nulls(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v is not None}


def _nix_locations(problems: list[str], models: Any) -> list[str]:
    """Name models by their attribute (``models."llama3.2:3b"``) when they came as a set.

    normalize() turned the set into a list, so validation speaks of ``models[1]``; a NixOS
    user wrote no list and would not know which model that is.
    """
    if not isinstance(models, Mapping):
        return problems
    keys = [json.dumps(str(k)) for k in models]
    pattern = re.compile(r"^models\[(\d+)\]")
    return [pattern.sub(lambda m: f"models.{keys[int(m[1])]}", p) for p in problems]


def _as_name(stem: str) -> str:
    # File names may hold spaces or non-ASCII letters; names must match NAME_PATTERN.
    cleaned = re.sub(r"[^A-Za-z0-9._:+-]+", "-", stem).strip("._:+-")
    return cleaned if re.match(NAME_PATTERN, cleaned) else "model"
