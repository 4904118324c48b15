"""Fake Ollama registry and Hugging Face API, served by the tests' real ``FileServer``.

They serve the shapes the real ones serve (read from Ollama's server/images.go and
llama.cpp's common/hf-cache.cpp): an Ollama manifest with its media types and sha256
digests, blobs by digest (with Range, resume and faults from ``FileServer``), the OCI
``/v2/_catalog`` and tags listings; the Hub's ``refs`` and recursive ``tree`` with LFS oids,
and files under ``resolve/<commit>``. Also small real GGUF files, with or without a template.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gguf import GGUFWriter

from tests.supervisor.file_server import FileServer, Served

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_gguf(path: Path, chat_template: str | None = None, padding: int = 0) -> bytes:
    """A real GGUF header without tensors; ``padding`` bytes of metadata make it bigger."""
    writer = GGUFWriter(path, "llama")
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if padding:
        writer.add_string("corral.test.padding", "x" * padding)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def ollama_model(
    server: FileServer,
    path: str,
    tag: str,
    model: bytes,
    *,
    params: dict[str, Any] | None = None,
    system: str | None = None,
    template: str | None = "{{ .Prompt }}",
    served_model: Served | None = None,
) -> str:
    """Publish a model at ``/v2/<path>/manifests/<tag>``; returns the model layer's digest.

    ``served_model`` replaces what the model blob's URL serves (a fault, other bytes).
    """
    layers = [("application/vnd.ollama.image.model", model)]
    if template is not None:
        layers.append(("application/vnd.ollama.image.template", template.encode()))
    if system is not None:
        layers.append(("application/vnd.ollama.image.system", system.encode()))
    if params is not None:
        layers.append(("application/vnd.ollama.image.params", json.dumps(params).encode()))
    layers.append(("application/vnd.ollama.image.license", b"Gemma Terms of Use"))
    config = json.dumps({"model_format": "gguf", "model_family": "gemma3"}).encode()
    for _, body in [*layers, ("config", config)]:
        blob = f"/v2/{path}/blobs/{digest(body)}"
        server.files[blob] = Served(body)
    if served_model is not None:
        server.files[f"/v2/{path}/blobs/{digest(model)}"] = served_model
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": digest(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": kind, "digest": digest(body), "size": len(body)} for kind, body in layers
        ],
    }
    server.files[f"/v2/{path}/manifests/{tag}"] = Served(json.dumps(manifest).encode())
    return digest(model)


def ollama_catalog(server: FileServer, tags: dict[str, list[str]]) -> None:
    """The OCI listing: ``/v2/_catalog`` and ``/v2/<repo>/tags/list``."""
    catalog = {"repositories": sorted(tags)}
    server.files["/v2/_catalog"] = Served(json.dumps(catalog).encode())
    for repo, names in tags.items():
        listing = {"name": repo, "tags": names}
        server.files[f"/v2/{repo}/tags/list"] = Served(json.dumps(listing).encode())


def hf_repo(server: FileServer, repo: str, files: dict[str, bytes]) -> None:
    """A Hub repo at ``COMMIT`` on branch main; every ``*.gguf`` is an LFS file."""
    refs = {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": COMMIT}]}
    server.files[f"/api/models/{repo}/refs"] = Served(json.dumps(refs).encode())
    tree = []
    for name, body in files.items():
        entry: dict[str, Any] = {"type": "file", "oid": "f" * 40, "size": len(body), "path": name}
        if name.endswith(".gguf"):
            lfs = {"oid": hashlib.sha256(body).hexdigest(), "size": len(body), "pointerSize": 134}
            entry["lfs"] = lfs
        tree.append(entry)
        server.files[f"/{repo}/resolve/{COMMIT}/{name}"] = Served(body)
    tree_path = f"/api/models/{repo}/tree/{COMMIT}?recursive=true"
    server.files[tree_path] = Served(json.dumps(tree).encode())
