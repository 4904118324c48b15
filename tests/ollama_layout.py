"""A store in Ollama's exact on-disk layout, built by the tests that read one.

Mirrors what ``ollama pull`` leaves behind (Ollama's ``manifest/manifest.go``
``WriteManifest``, ``manifest/paths.go`` ``BlobsPath``, ``server/images.go``'s media
types): ``manifests/<host>/<namespace>/<model>/<tag>``, a JSON manifest (schema 2, Docker's
media type) with a config blob and typed layers, and every blob as ``blobs/sha256-<hex>`` of
its own content. A large model file is hard-linked in (copied only across file systems), so
the demo model takes no second 250 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.ollama.image."


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path: equal before and after means
    byte-for-byte unchanged (and nothing added or removed)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        found[str(path.relative_to(root))] = digest.hexdigest()
    return found


def add_model(
    root: Path,
    name: str,
    model: Path,
    *,
    model_sha256: str | None = None,
    params: dict[str, Any] | None = None,
    system: str | None = None,
    template: str | None = None,
    projector: Path | None = None,
    adapters: tuple[Path, ...] = (),
    config: dict[str, Any] | None = None,
) -> bytes:
    """Write ``name`` (``[host/][namespace/]model:tag``) into the store at ``root``; the
    manifest's bytes come back (their sha256 is the digest Ollama lists)."""
    host, namespace, repo, tag = _parts(name)
    layers = [_file_layer(root, "model", model, model_sha256)]
    if template is not None:
        layers.append(_data_layer(root, "template", template.encode()))
    if system is not None:
        layers.append(_data_layer(root, "system", system.encode()))
    if params is not None:
        layers.append(_data_layer(root, "params", json.dumps(params).encode()))
    if projector is not None:
        layers.append(_file_layer(root, "projector", projector, None))
    layers += [_file_layer(root, "adapter", adapter, None) for adapter in adapters]
    settings = config or {"model_format": "gguf", "model_family": "gemma3", "file_type": "Q4_K_M"}
    settings = {**settings, "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}
    config_layer = _data_layer(root, "", json.dumps(settings).encode(), CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_layer,
        "layers": layers,
    }
    path = root / "manifests" / host / namespace / repo / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(manifest) + "\n").encode()  # Go's json.Encoder ends with a newline
    path.write_bytes(data)
    return data


def _parts(name: str) -> tuple[str, str, str, str]:
    rest, tag = name.rsplit(":", 1) if ":" in name.rsplit("/", 1)[-1] else (name, "latest")
    defaults = ["registry.ollama.ai", "library"]
    parts = rest.split("/")
    host, namespace, model = [*defaults[: 3 - len(parts)], *parts]
    return host, namespace, model, tag


def _blob(root: Path, hex_digest: str) -> Path:
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    return blobs / f"sha256-{hex_digest}"


def _data_layer(
    root: Path, kind: str, data: bytes, media_type: str | None = None
) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    blob = _blob(root, digest)
    if not blob.exists():
        blob.write_bytes(data)
    return {
        "mediaType": media_type or LAYER + kind,
        "digest": f"sha256:{digest}",
        "size": len(data),
    }


def _file_layer(root: Path, kind: str, file: Path, sha256: str | None) -> dict[str, Any]:
    digest = sha256 or hashlib.sha256(file.read_bytes()).hexdigest()
    blob = _blob(root, digest)
    if not blob.exists():
        try:
            os.link(file, blob)
        except OSError:
            shutil.copyfile(file, blob)
    return {"mediaType": LAYER + kind, "digest": f"sha256:{digest}", "size": file.stat().st_size}
