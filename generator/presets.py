"""Presets: a model entry with ``from: <other model>`` that reuses the other's GGUF file and
server settings and overrides what it sets itself, like an Ollama Modelfile's FROM.

Owns the merge, done on raw entries before field validation so that every inherited value is
validated in its new place. ``parameters`` merge key by key (a preset adds to its base's
request defaults); everything else the preset sets replaces the base's. A preset never
inherits its base's identity or visibility (name, aliases, preload, unlisted). Unknown bases
and cycles are left in place for ``rules`` to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from corral.generator.keys import spellings

FROM = "from"
#: Keys that say which entry this is and who sees it: never inherited.
NOT_INHERITED = frozenset({"name", "aliases", "preload", "unlisted", "from_"})


def expand(data: Mapping[str, Any], fields: Iterable[str]) -> Mapping[str, Any]:
    """``data`` with every preset entry merged onto its base (recursively)."""
    models = data.get("models")
    if not isinstance(models, list) or not any(
        isinstance(m, Mapping) and FROM in m for m in models
    ):
        return data
    spelled = {s: field for field in fields for s in spellings(field)}
    spelled[FROM] = "from_"
    by_name = {
        m["name"]: m for m in models if isinstance(m, Mapping) and isinstance(m.get("name"), str)
    }
    merged = [_merge(m, by_name, spelled, ()) if isinstance(m, Mapping) else m for m in models]
    return {**data, "models": merged}


def _merge(
    entry: Mapping[str, Any],
    by_name: Mapping[str, Mapping[str, Any]],
    spelled: Mapping[str, str],
    chain: tuple[str, ...],
) -> Mapping[str, Any]:
    base_name = entry.get(FROM)
    name = entry.get("name")
    if not isinstance(base_name, str) or base_name not in by_name or base_name in chain:
        return entry
    base = _merge(by_name[base_name], by_name, spelled, (*chain, str(name)))
    inherited = {
        key: value
        for key, value in base.items()
        if spelled.get(key, key) not in NOT_INHERITED and key != FROM
    }
    own_fields = {spelled.get(key, key) for key in entry}
    # Drop inherited keys the preset sets under any spelling, so no field arrives twice.
    result = {k: v for k, v in inherited.items() if spelled.get(k, k) not in own_fields}
    result.update(entry)
    base_params = _field(base, "parameters", spelled)
    own_params = _field(entry, "parameters", spelled)
    if isinstance(base_params, Mapping) and isinstance(own_params, Mapping):
        for key in [k for k in result if spelled.get(k, k) == "parameters"]:
            result[key] = {**base_params, **own_params}
    return result


def _field(entry: Mapping[str, Any], field: str, spelled: Mapping[str, str]) -> Any:
    for key, value in entry.items():
        if spelled.get(key, key) == field:
            return value
    return None
