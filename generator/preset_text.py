"""A preset as text: config.yaml's YAML or a Nix attribute set, with its comments.

Owns the two renderings of a model entry that ``corral import-modelfile`` prints: notes
above the entry, remarks above the key they explain, comments wrapped, Nix's option names
(``extraArgs``, ``contextSize``) and its quoting. It decides nothing about what the entry
holds (``modelfile_import``).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from corral.generator import dump
from corral.generator.keys import nix_name

_NIX_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_'-]*$")
#: Comment lines are wrapped to this width.
_WIDTH = 92


@dataclass
class Preset:
    """A model entry (config.yaml's keys) and the comments that go with it: ``notes`` above
    the entry, ``remarks`` above the key they explain."""

    entry: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    remarks: dict[str, list[str]] = field(default_factory=dict)

    def remark(self, key: str, text: str) -> None:
        self.remarks.setdefault(key, []).append(text)


def to_yaml(preset: Preset, source: str) -> str:
    """config.yaml's text for the preset: a ``models:`` list of one, comments above."""
    text = dump.yaml_text({"models": [preset.entry]})
    lines = text.splitlines()
    out = [f"# From {source} by `corral import-modelfile`.", *_comments(preset.notes, "")]
    for line in lines:
        # The entry's own keys: `- name:` and the lines indented by two under it.
        key = re.match(r"^(?:- |  )([a-z_]+):", line)
        if key and key[1] in preset.remarks:
            indent = "  "
            out += _comments(preset.remarks[key[1]], indent)
        out.append(line)
    return "\n".join(out) + "\n"


def to_nix(preset: Preset, source: str) -> str:
    """A Nix attribute set for ``services.corral.models``: the preset under its name."""
    entry = dict(preset.entry)
    name = entry.pop("name")
    out = [f"# From {source} by `corral import-modelfile --nix`.", *_comments(preset.notes, "")]
    out += ["{", f"  {_nix_key(name)} = {{"]
    for key, value in entry.items():
        nix_key = nix_name(key)
        out += _comments(preset.remarks.get(key, []), "    ")
        out.append(f"    {_nix_key(nix_key)} = {_nix_value(value, '    ')};")
    out += ["  };", "}"]
    return "\n".join(out) + "\n"


def _comments(texts: list[str], indent: str) -> list[str]:
    width = _WIDTH - len(indent) - 2
    lines = [line for text in texts for line in textwrap.wrap(text, width, break_on_hyphens=False)]
    return [f"{indent}# {line}" for line in lines]


def _nix_key(key: str) -> str:
    return key if _NIX_IDENTIFIER.match(key) else _nix_string(key)


def _nix_value(value: Any, indent: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text
    if isinstance(value, str):
        return _nix_string(value)
    if isinstance(value, list):
        return "[ " + " ".join(_nix_value(v) for v in value) + " ]"
    if isinstance(value, dict):
        inner = [f"{indent}  {_nix_key(k)} = {_nix_value(v)};" for k, v in value.items()]
        return "\n".join(["{", *inner, indent + "}"])
    raise TypeError(f"no Nix form for {value!r}")


def _nix_string(text: str) -> str:
    # JSON's escapes are Nix's for ", \, \n, \r, \t; ${ would interpolate.
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].replace("${", "\\${")
    return f'"{escaped}"'
