"""Hugging Face's download cache, and llama.cpp's, read in place and never written.

Owns the two layouts and the names their GGUF files are served by:
- Hugging Face's hub cache (``~/.cache/huggingface/hub``), which ``huggingface_hub`` and, since
  it moved there, llama.cpp's ``-hf`` write (llama.cpp's ``common/hf-cache.cpp``):
  ``models--<owner>--<repo>/refs/<branch>`` holds a commit, and
  ``snapshots/<commit>/<path>`` the files (links into ``blobs/``);
- llama.cpp's older cache (``~/.cache/llama.cpp``): ``manifest=<owner>=<repo>=<tag>.json``
  names the ``ggufFile`` and ``mmprojFile``, saved flat as ``<owner>_<repo>_<path>`` with
  each ``/`` as ``_``.
A file is served as ``hf:<owner>/<repo>:<QUANT>`` (the quant read from its name, as
``corral pull`` and llama.cpp's ``-hf owner/repo:QUANT`` name it), else as
``hf:<owner>/<repo>/<path>``; a split GGUF through its first part; a repo's ``mmproj`` file
goes to its models as ``--mmproj``. Only names are listed and small manifests read; nothing
is hashed or written. ``join`` adds them to a config after the names it already routes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from corral.generator.fields import NAME_PATTERN
from corral.generator.model_settings import ModelConfig
from corral.generator.problems import ConfigError
from corral.generator.settings import Config

GGUF = ".gguf"
_QUANT = re.compile(r"(?i)(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|f16|bf16|f32)(?![a-z0-9])")
_SPLIT = re.compile(r"-(\d{5})-of-\d{5}$")
_MANIFEST = re.compile(r"^manifest=([^=]+)=([^=]+)=(.*)\.json$")


def read(root: Path) -> dict[str, dict[str, Any]]:
    """Config entries by name for every GGUF in the cache at ``root`` (either layout)."""
    found: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return found
    for repo in sorted(root.glob("models--*--*")):
        found.update(_hub_repo(repo))
    for manifest in sorted(root.glob("manifest=*.json")):
        found.update(_llama_manifest(root, manifest))
    return found


def quant(file_name: str) -> str | None:
    """The quant a GGUF's name carries (``Q4_K_M``, ``IQ3_XS``, ``F16``), upper-cased."""
    stem = _SPLIT.sub("", file_name.removesuffix(GGUF))
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def _hub_repo(repo: Path) -> dict[str, dict[str, Any]]:
    owner_repo = repo.name.removeprefix("models--").replace("--", "/")
    commit = _ref(repo / "refs")
    snapshot = repo / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        return {}
    files = sorted(p for p in snapshot.rglob(f"*{GGUF}") if p.is_file())
    relative = [PurePosixPath(p.relative_to(snapshot).as_posix()) for p in files]
    return _entries(owner_repo, list(zip(relative, files, strict=True)))


def _ref(refs: Path) -> str | None:
    """The commit of ``main``, else of the first branch written (as llama.cpp reads it)."""
    names = sorted(refs.glob("*")) if refs.is_dir() else []
    for ref in sorted(names, key=lambda p: p.name != "main"):
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
            if commit and "/" not in commit and commit not in (".", ".."):
                return commit
    return None


def _llama_manifest(root: Path, manifest: Path) -> dict[str, dict[str, Any]]:
    match = _MANIFEST.match(manifest.name)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if match is None or not isinstance(data, dict):
        return {}
    owner, repo, tag = match.groups()
    files = []
    for key in ("ggufFile", "mmprojFile"):
        node = data.get(key)
        name = node.get("rfilename") if isinstance(node, dict) else None
        if isinstance(name, str) and name:
            local = root / f"{owner}_{repo}_{name}".replace("/", "_")
            if local.is_file():
                files.append((PurePosixPath(name), local))
    entries = _entries(f"{owner}/{repo}", files)
    # The manifest names the model by the tag it was asked for (`:Q4_K_M`, `:latest`).
    model = next((e for e in entries.values() if "mmproj" not in Path(e["path"]).name), None)
    if model is not None and tag and re.match(r"^[A-Za-z0-9._-]+$", tag):
        return {f"hf:{owner}/{repo}:{tag}": {**model, "name": f"hf:{owner}/{repo}:{tag}"}}
    return entries


def _entries(owner_repo: str, files: list[tuple[PurePosixPath, Path]]) -> dict[str, Any]:
    projectors = [local for path, local in files if "mmproj" in path.name.lower()]
    args = ["--mmproj", str(projectors[0])] if projectors else []
    out: dict[str, dict[str, Any]] = {}
    for path, local in files:
        split = _SPLIT.search(path.name.removesuffix(GGUF))
        if "mmproj" in path.name.lower() or (split and split[1] != "00001"):
            continue
        kind = quant(path.name)
        name = f"hf:{owner_repo}:{kind}" if kind else f"hf:{owner_repo}/{path}"
        if name in out:  # a second file of one quant keeps its own path as its name
            name = f"hf:{owner_repo}/{path}"
        out[name] = {"name": name, "path": str(local), **({"args": args} if args else {})}
    return out


def join(config: Config) -> Config:
    """``config`` with the cache's models (``hf_cache``) that no entry or peer already names."""
    if config.hf_cache is None:
        return config
    root = config.hf_cache.expanduser().absolute()
    if config.models_path is not None and config.models_path.is_relative_to(root):
        raise ConfigError(
            [
                f"models_path: {config.models_path} is inside hf_cache ({root}); corral "
                "downloads into models_path and never writes a download cache: choose "
                "another folder"
            ]
        )
    taken = {name for m in config.models for name in m.names}
    taken |= {n for peer in config.peers.values() for m in peer.entries for n in m.names}
    found = [
        ModelConfig(name=name, path=Path(entry["path"]), args=entry.get("args", []))
        for name, entry in read(root).items()
        if name not in taken and re.match(NAME_PATTERN, name)
    ]
    return config.model_copy(update={"models": [*config.models, *found]})
