"""``corral.lock.json``: every source of a config, resolved to exact URLs, sizes and sha256.

Owns the lock's shape, which the NixOS module reads with ``builtins.fromJSON``
(nixos-module/lock.nix turns each file into ``pkgs.fetchurl { url; hash; }``), and building
it from a config. Entries are keyed by the ``source`` string exactly as the config writes it,
so that Nix can look them up without parsing anything. It downloads no model file: the
registries publish each file's sha256 (Ollama's layer digest, the Hub's LFS oid).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.generator.settings import Config
from corral.supervisor.pull import library

LOCK_NAME = "corral.lock.json"
VERSION = 1


class LockError(Exception):
    """A source that cannot be locked; says why and what to do instead."""


def build(
    config: Config,
    registry: str | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The lock for every model with a ``source`` (one entry per distinct source)."""
    entries: dict[str, Any] = {}
    for model in config.models:
        if model.source is None or model.source in entries:
            continue
        plan = library.resolve(model.source, registry)
        entries[model.source] = entry(plan)
        say(f"{model.source}: {', '.join(f['name'] for f in entries[model.source]['files'])}")
    return {"version": VERSION, "sources": dict(sorted(entries.items()))}


def entry(plan: library.Plan) -> dict[str, Any]:
    files = []
    for remote in plan.files:
        if remote.sha256 is None or remote.size is None:
            raise LockError(
                f"{plan.source}: {remote.url} publishes no sha256, so it cannot be locked; "
                "use a library or hf: source, or path = pkgs.fetchurl { url; hash; } in Nix"
            )
        files.append(
            {
                "role": remote.role,
                "name": remote.name,
                "url": remote.url,
                "size": remote.size,
                "sha256": remote.sha256,
                "hash": sri(remote.sha256),
            }
        )
    found: dict[str, Any] = {"files": files}
    found.update(plan.defaults)
    return found


def sri(sha256_hex: str) -> str:
    """``sha256-<base64>``, the form of ``fetchurl``'s ``hash``."""
    return "sha256-" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def write(lock: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
