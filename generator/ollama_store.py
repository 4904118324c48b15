"""Ollama's model store (``OLLAMA_MODELS``), read in place and never written.

Owns the store's layout as Ollama writes it (``manifest/manifest.go``, ``manifest/paths.go``,
``types/model/name.go``): ``manifests/<host>/<namespace>/<model>/<tag>``, a JSON manifest
whose layers name blobs by digest, ``blobs/sha256-<hex>``; the name Ollama lists a model by
(``library/`` and the default host dropped); the manifest's digest (sha256 of its bytes, as
``/api/tags`` reports it) and size (its layers and config); and what each layer becomes in
a config entry: the model layer is ``path``, ``params`` are ``parameters`` (``num_ctx`` is
``context_size``), ``system`` is ``system_prompt``, a ``projector`` is ``--mmproj``, each
``adapter`` a ``--lora``, a ``draft`` ``--model-draft``. The Go ``template`` layer is only
noted: llama-server runs the GGUF's own template.

Files are only read, and only the small ones whole (manifests, params, system, config); of
a model blob just its first four bytes (the GGUF magic). Nothing is hashed or written. It
does not decide which entries the config keeps (``loader``) nor validate them (``settings``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.generator import model_source, ollama_options
from corral.generator.fields import NAME_PATTERN

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
PREFIX = "ollama:"
MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
SYSTEM = "application/vnd.ollama.image.system"
TEMPLATE = "application/vnd.ollama.image.template"
PROJECTOR = "application/vnd.ollama.image.projector"
ADAPTER = "application/vnd.ollama.image.adapter"
DRAFT = "application/vnd.ollama.image.draft"
#: Params, system and config layers are a few bytes to kilobytes; one above this is not one
#: Ollama wrote, and is not read.
SMALL_LAYER = 1024 * 1024
GGUF_MAGIC = b"GGUF"
_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


class StoreError(ValueError):
    """A manifest that cannot be served, with the reason."""


@dataclass(frozen=True)
class StoreModel:
    """One model of the store: its name, its manifest's digest, size and time, the files
    its layers point at, and the defaults its small layers hold."""

    name: str
    manifest: Path
    digest: str
    size: int
    modified: float
    model: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    context_size: int | None = None
    system: str | None = None
    args: tuple[str, ...] = ()
    go_template: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The model as a config entry (config.yaml's keys)."""
        out: dict[str, Any] = {"name": self.name, "path": str(self.model)}
        if self.context_size is not None:
            out["context_size"] = self.context_size
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.system is not None:
            out["system_prompt"] = self.system
        if self.args:
            out["args"] = list(self.args)
        return out


@dataclass(frozen=True)
class Store:
    """What a store folder holds: its models by name, and why any manifest was skipped."""

    root: Path
    models: dict[str, StoreModel]
    skipped: tuple[str, ...] = ()


def read(root: Path) -> Store:
    """Every servable model under ``root``; the rest are named in ``skipped``."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return Store(root, {}, (f"{root}: no manifests folder; is it Ollama's models folder?",))
    models: dict[str, StoreModel] = {}
    skipped: list[str] = []
    for file in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        host, namespace, model, tag = file.relative_to(manifests).parts
        name = display_name(host, namespace, model, tag)
        try:
            if re.match(NAME_PATTERN, name) is None:
                raise StoreError(f"{name!r} is not a name corral can serve")
            models[name] = _model(root, name, file)
        except (OSError, StoreError, ValueError) as exc:
            skipped.append(f"{file}: {exc}; not served")
    return Store(root, models, tuple(skipped))


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    """``DisplayShortest``: ``gemma3:270m``, ``someone/model:tag``, ``host/ns/model:tag``."""
    if host.lower() != DEFAULT_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace.lower() != DEFAULT_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


def name_of(name: model_source.OllamaName) -> str:
    """A parsed name (``ollama:gemma3``) as the store lists it (``gemma3:latest``)."""
    return display_name(name.host or DEFAULT_HOST, name.namespace, name.model, name.tag)


def blob_path(root: Path, digest: str) -> Path:
    """``BlobsPath``: ``sha256:<hex>`` -> ``root/blobs/sha256-<hex>``; only real digests."""
    match = _DIGEST.match(digest)
    if match is None:
        raise StoreError(f"layer digest {digest!r} is not sha256:<64 hex digits>")
    return root / "blobs" / f"sha256-{match[1]}"


def _model(root: Path, name: str, file: Path) -> StoreModel:
    data = file.read_bytes()
    try:
        manifest = json.loads(data)
        layers = [
            (str(x["mediaType"]), str(x["digest"]), int(x["size"])) for x in manifest["layers"]
        ]
        config = manifest.get("config") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"not a manifest ({exc!r})") from None
    sizes = sum(size for _, _, size in layers) + int(config.get("size") or 0)
    paths = [(kind, blob_path(root, digest), size) for kind, digest, size in layers]
    found = [path for kind, path, _ in paths if kind == MODEL]
    if not found:
        raise StoreError("no model layer (a cloud model, or not a GGUF)")
    with found[0].open("rb") as blob:  # never a mode that could write
        if blob.read(4) != GGUF_MAGIC:
            raise StoreError(f"its model layer {found[0].name} is not a GGUF file")
    values: dict[str, Any] = {"system": None, "parameters": {}, "context_size": None}
    args: list[str] = []
    for kind, path, size in paths:
        if kind == PARAMS:
            options = json.loads(_small(path, size))
            if not isinstance(options, dict):
                raise StoreError(f"params layer {path.name} is not a JSON object")
            values["parameters"] = ollama_options.to_parameters(options)
            if isinstance(options.get("num_ctx"), int) and options["num_ctx"] > 0:
                values["context_size"] = options["num_ctx"]
        elif kind == SYSTEM:
            values["system"] = _small(path, size).decode("utf-8")
        elif kind == PROJECTOR and "--mmproj" not in args:
            args += ["--mmproj", str(path)]
        elif kind == ADAPTER:
            args += ["--lora", str(path)]
        elif kind == DRAFT:
            args += ["--model-draft", str(path)]
    return StoreModel(
        name=name,
        manifest=file,
        digest=hashlib.sha256(data).hexdigest(),
        size=sizes,
        modified=file.stat().st_mtime,
        model=found[0],
        args=tuple(args),
        go_template=any(kind == TEMPLATE for kind, _, _ in paths),
        details=_details(root, config),
        **values,
    )


def _small(path: Path, size: int) -> bytes:
    if size > SMALL_LAYER:
        raise StoreError(f"layer {path.name} is {size} bytes, more than a settings layer holds")
    return path.read_bytes()


def _details(root: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The manifest's config blob as Ollama's ``details``; empty when it cannot be read."""
    try:
        data = json.loads(_small(blob_path(root, str(config["digest"])), int(config["size"])))
    except (KeyError, TypeError, ValueError, OSError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        "format": data.get("model_format") or "gguf",
        "family": data.get("model_family") or "",
        "families": data.get("model_families"),
        "parameter_size": data.get("model_type") or "",
        "quantization_level": data.get("file_type") or "",
    }
