"""Which of Ollama's store models a config serves, and how the config sets more on them.

Owns the merge of a store (``ollama_store``) into a config's raw models, before validation,
so that presets, names and groups treat store models like any other: an entry of the
config wins over the store model of its name; an entry whose ``path`` is ``ollama:NAME``
takes that store model's file and defaults under its own settings (its own keys win, its
parameters key by key); every other store model joins under Ollama's name, and a
``:latest`` one answers to the bare name too, as Ollama resolves it. After validation it
marks the entries that serve a store model (their digest is the store's) and reports a
preset whose base is in neither the config nor the store. It reads the store through
``ollama_store`` only and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.generator import model_source, ollama_store
from corral.generator.keys import spellings
from corral.generator.settings import Config

FIELD = "ollama_models"


def root(data: Mapping[str, Any], field: str = FIELD) -> Path | None:
    """The store folder a raw config names (any spelling), ``~`` expanded; None: no store."""
    for key in spellings(field):
        value = data.get(key)
        if isinstance(value, str) and value:
            return Path(value).expanduser().absolute()
    return None


def merge(
    data: Mapping[str, Any], store: ollama_store.Store, *, add: bool
) -> tuple[dict[str, Any], dict[str, ollama_store.StoreModel], list[str]]:
    """``data`` with its ``ollama:`` paths resolved and (``add``) the store's other models
    added; the store model each entry serves, by entry name; and the problems found."""
    out = dict(data)
    models = out.get("models")
    keyed = isinstance(models, Mapping)
    items = list(models.items()) if isinstance(models, Mapping) else list(enumerate(models or []))
    served: dict[str, ollama_store.StoreModel] = {}
    problems: list[str] = []
    downloads = root(data, "models_path")
    if downloads is not None and downloads.is_relative_to(store.root):
        problems.append(
            f"models_path: {downloads} is inside ollama_models ({store.root}); corral downloads "
            "into models_path and never writes Ollama's store: choose another folder"
        )
    resolved: list[tuple[Any, Any]] = []
    for key, entry in items:
        place = f'models."{key}"' if keyed else f"models[{key}]"
        name = key if keyed else (entry.get("name") if isinstance(entry, Mapping) else None)
        if isinstance(entry, Mapping) and _path(entry).startswith(ollama_store.PREFIX):
            entry, model = _resolve(entry, store, place, problems)
            if model is not None and isinstance(name, str):
                served[name] = model
        resolved.append((key, entry))
    # A name the config or a peer already routes is theirs: the store's model yields.
    taken = _names(resolved, keyed) | _peer_names(data)
    additions = []
    if add:
        for model in store.models.values():
            if model.name in taken:
                continue
            entry = model.entry()
            bare = model.name.removesuffix(":latest")
            if bare != model.name and bare not in taken and bare not in store.models:
                entry["aliases"] = [bare]
            taken.update([model.name, *entry.get("aliases", [])])
            served[model.name] = model
            additions.append((model.name, entry))
    if keyed:
        out["models"] = {**dict(resolved), **dict(additions)}
    else:
        out["models"] = [entry for _, entry in resolved] + [entry for _, entry in additions]
    return out, served, problems


def without_store(data: Mapping[str, Any]) -> list[str]:
    """Entries whose ``path`` names a store model when no store is named: a problem each."""
    models = data.get("models")
    items = models.items() if isinstance(models, Mapping) else enumerate(models or [])
    return [
        f"{f'models.{key!r}' if isinstance(models, Mapping) else f'models[{key}]'}.path: "
        f"{_path(entry)!r} names a model of Ollama's store, but no store is set: set "
        "ollama_models (or env OLLAMA_MODELS) to Ollama's models folder"
        for key, entry in items
        if isinstance(entry, Mapping) and _path(entry).startswith(ollama_store.PREFIX)
    ]


def attach(
    config: Config, served: Mapping[str, ollama_store.StoreModel], store: ollama_store.Store
) -> tuple[Config, list[str]]:
    """``config`` with each entry that serves a store model marked with it, and the presets
    whose base is in neither the config nor the store (``rules`` lets those pass when a
    store is named, since ``corral generate`` runs where the store cannot be read)."""
    models = []
    problems = []
    for index, model in enumerate(config.models):
        if model.name in served:
            model = model.model_copy()
            model._ollama = served[model.name]
        elif model.from_ is not None and model.path is None and model.cmd is None:
            problems.append(
                f"models[{index}].from: unknown model {model.from_!r}: not in the config, nor "
                f"in Ollama's store at {store.root} (ollama_models); `ollama list` shows "
                "what the store holds"
            )
        models.append(model)
    return config.model_copy(update={"models": models}), problems


def _resolve(
    entry: Mapping[str, Any], store: ollama_store.Store, place: str, problems: list[str]
) -> tuple[Mapping[str, Any], ollama_store.StoreModel | None]:
    text = _path(entry)
    try:
        parsed = model_source.parse(text)
    except model_source.SourceSyntaxError:
        parsed = None
    wanted = ollama_store.name_of(parsed) if isinstance(parsed, model_source.OllamaName) else text
    model = store.models.get(wanted)
    if model is None:
        listed = ", ".join(sorted(store.models)) or "(none)"
        problems.append(
            f"{place}.path: {text!r} is not in Ollama's store at {store.root} "
            f"(ollama_models); its models are: {listed}"
        )
        return entry, None
    if _first(entry, "source") is not None:
        problems.append(
            f"{place}.source: a model read from Ollama's store ({text}) cannot have a source: "
            "corral never writes the store; pull it with `ollama pull`, or drop the `ollama:` path"
        )
        return entry, None
    return _under(model.entry(), entry), model


def _under(defaults: dict[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The store's entry with ``entry``'s own settings over it: parameters key by key, the
    store's arguments before its own (``--mmproj``, ``--lora``)."""
    out = {k: v for k, v in defaults.items() if _first(entry, k) is None and k != "name"}
    out.update({k: v for k, v in entry.items() if k not in spellings("path")})
    out["path"] = defaults["path"]
    params_key = _key(entry, "parameters")
    if params_key is not None and isinstance(entry[params_key], Mapping):
        out[params_key] = {**defaults.get("parameters", {}), **entry[params_key]}
    args_key = _key(entry, "args")
    if args_key is not None and isinstance(entry[args_key], list) and "args" in defaults:
        own = entry[args_key]
        pairs = zip(defaults["args"][::2], defaults["args"][1::2], strict=True)
        # llama-server takes one projector: the entry's own replaces the store's.
        kept = [
            a
            for flag, file in pairs
            if not (flag == "--mmproj" and flag in own)
            for a in (flag, file)
        ]
        out[args_key] = [*kept, *own]
    return out


def _names(entries: list[tuple[Any, Any]], keyed: bool) -> set[str]:
    taken: set[str] = set()
    for key, entry in entries:
        if not isinstance(entry, Mapping):
            continue
        name = key if keyed else entry.get("name")
        if isinstance(name, str):
            taken.add(name)
        aliases = _first(entry, "aliases")
        if isinstance(aliases, list):
            taken.update(a for a in aliases if isinstance(a, str))
    return taken


def _peer_names(data: Mapping[str, Any]) -> set[str]:
    peers = data.get("peers")
    found: set[str] = set()
    for peer in peers.values() if isinstance(peers, Mapping) else []:
        listed = peer.get("models") if isinstance(peer, Mapping) else None
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, str):
                found.add(item)
            elif isinstance(item, Mapping):
                found.update(
                    n
                    for n in [item.get("name"), *(item.get("aliases") or [])]
                    if isinstance(n, str)
                )
    return found


def _path(entry: Mapping[str, Any]) -> str:
    value = entry.get("path")
    return value if isinstance(value, str) else ""


def _key(entry: Mapping[str, Any], field: str) -> str | None:
    return next((k for k in spellings(field) if k in entry), None)


def _first(entry: Mapping[str, Any], field: str) -> Any:
    key = _key(entry, field)
    return None if key is None else entry[key]
