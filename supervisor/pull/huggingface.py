"""Hugging Face by repo and quant: which files ``hf:owner/repo:QUANT`` means, as llama.cpp's
``-hf`` picks them.

Owns the endpoint (env ``HF_ENDPOINT``, as in huggingface_hub; default
``https://huggingface.co``), the token, the repo's file list pinned to one commit, and the
choice among its files: the model file for the quant (every part of a split GGUF) and the
best ``mmproj``. It downloads nothing (see ``library``).

From llama.cpp's common/hf-cache.cpp and common/download.cpp: ``GET {endpoint}/api/models/
{repo}/refs`` gives ``branches[].targetCommit``; ``GET {endpoint}/api/models/{repo}/tree/
{commit}?recursive=true`` lists ``{type, path, size, lfs: {oid: <sha256>}}``; a file is
``{endpoint}/{repo}/resolve/{commit}/{path}``. The quant matches ``QUANT[.-]`` in the file
name, case-insensitively; without one, Q4_K_M, then Q8_0, then the first model file. Files
named ``mmproj`` (and ``imatrix``) are never the model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import httpx

from corral.generator.model_source import HubFile, HubQuant
from corral.supervisor.pull.sources import check_url

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
TIMEOUT = httpx.Timeout(30.0)
_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Za-z0-9_]+)$")
_NOT_MODELS = ("mmproj", "imatrix")


class HubEntry(NamedTuple):
    """One file of a repo: its path, size, and sha256 (the LFS oid; None for small files)."""

    path: str
    size: int
    sha256: str | None


class HubError(Exception):
    """The Hub said no, or the repo has no file for what was asked; names what exists."""


@dataclass(frozen=True)
class HubListing:
    """One repo at one commit: its files with their sizes and sha256 (LFS files only)."""

    endpoint: str
    repo: str
    commit: str
    files: tuple[HubEntry, ...]

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{self.repo}/resolve/{self.commit}/{path}"


@dataclass(frozen=True)
class Chosen:
    """The files a source means: the model (all parts, in order) and a projector, if any."""

    parts: tuple[HubEntry, ...]
    mmproj: HubEntry | None


def endpoint() -> str:
    value = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    check_url(value)
    return value


def headers() -> dict[str, str]:
    # Gated repos (Llama, Gemma) need the token that `huggingface-cli login` stores.
    token = os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def listing(repo: str, revision: str | None) -> HubListing:
    base = endpoint()
    commit = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else None
    if commit is None:
        refs = _json(f"{base}/api/models/{repo}/refs", repo)
        listed = refs.get("branches") if isinstance(refs, dict) else None
        branches = {
            b.get("name"): b.get("targetCommit") for b in listed or [] if isinstance(b, dict)
        }
        wanted = revision or "main"
        commit = branches.get(wanted)
        if not isinstance(commit, str):
            raise HubError(
                f"hf:{repo}: no branch {wanted!r}; branches are {sorted(map(str, branches))}"
            )
    tree = _json(f"{base}/api/models/{repo}/tree/{commit}?recursive=true", repo)
    files = []
    for item in tree if isinstance(tree, list) else []:
        if isinstance(item, dict) and item.get("type") == "file":
            lfs = item.get("lfs")
            lfs = lfs if isinstance(lfs, dict) else {}
            sha = lfs.get("oid") if isinstance(lfs.get("oid"), str) else None
            size = lfs.get("size") or item.get("size") or 0
            files.append(HubEntry(str(item["path"]), int(size), sha))
    return HubListing(base, repo, commit, tuple(files))


def choose(source: HubQuant | HubFile, found: HubListing) -> Chosen:
    ggufs = [f for f in found.files if f[0].lower().endswith(".gguf")]
    if isinstance(source, HubFile):
        match = [f for f in ggufs if f[0].lower() == source.file.lower()]
        if not match:
            raise HubError(f"hf:{source.repo}: no file {source.file!r}; {_listed(ggufs)}")
        primary = match[0]
    else:
        primary = _by_quant(source, ggufs)
    return Chosen(_parts(primary, ggufs), _mmproj(primary, ggufs))


def quants(files: list[HubEntry]) -> list[str]:
    """The quant names found in a repo's model files, as `-hf` would accept them."""
    found = set()
    for path, _, _ in files:
        name = PurePosixPath(path).name
        split = _SPLIT.match(name)
        stem = split["prefix"] if split else name.removesuffix(".gguf")
        if _is_model(path):
            found.add(re.split(r"[-.]", stem)[-1].upper())
    return sorted(found)


def _by_quant(source: HubQuant, ggufs: list[HubEntry]) -> HubEntry:
    wanted = [source.quant] if source.quant else list(DEFAULT_QUANTS)
    for quant in wanted:
        pattern = re.compile(re.escape(quant) + r"[.-]", re.IGNORECASE)
        for file in ggufs:
            split = _SPLIT.match(PurePosixPath(file[0]).name)
            if (
                _is_model(file[0])
                and pattern.search(file[0])
                and (not split or int(split["index"]) == 1)
            ):
                return file
    models = [f for f in ggufs if _is_model(f[0])]
    if source.quant is None and models:
        return models[0]
    asked = source.quant or " or ".join(DEFAULT_QUANTS)
    raise HubError(
        f"hf:{source.repo}: no model file for quant {asked}; the repo has quants "
        f"{', '.join(quants(models)) or '(none)'}; {_listed(ggufs)}"
    )


def _parts(primary: HubEntry, ggufs: list[HubEntry]) -> tuple[HubEntry, ...]:
    split = _SPLIT.match(primary[0])
    if split is None:
        return (primary,)
    same = [
        f
        for f in ggufs
        if (m := _SPLIT.match(f[0]))
        and m["prefix"] == split["prefix"]
        and m["count"] == split["count"]
    ]
    parts = tuple(sorted(same, key=lambda f: f[0]))
    if len(parts) != int(split["count"]):
        raise HubError(
            f"{primary[0]}: the repo has {len(parts)} of its {int(split['count'])} parts"
        )
    return parts


def _mmproj(primary: HubEntry, ggufs: list[HubEntry]) -> HubEntry | None:
    # llama.cpp's find_best_sibling: in the model's folder or one above it, the deepest,
    # then the quant closest in bits to the model's.
    folder = PurePosixPath(primary.path).parent.parts
    candidates = [
        f
        for f in ggufs
        if "mmproj" in PurePosixPath(f.path).name
        and folder[: len(PurePosixPath(f.path).parent.parts)] == PurePosixPath(f.path).parent.parts
    ]
    if not candidates:
        return None
    bits = _bits(primary.path)
    return min(
        candidates,
        key=lambda f: (-len(PurePosixPath(f.path).parent.parts), abs(_bits(f.path) - bits)),
    )


def _bits(path: str) -> int:
    name = PurePosixPath(path).name
    split = _SPLIT.match(name)
    stem = split["prefix"] if split else name.removesuffix(".gguf")
    tag = _TAG.search(stem)
    digits = re.search(r"\d+", tag[1]) if tag else None
    return int(digits[0]) if digits else 0


def _is_model(path: str) -> bool:
    name = PurePosixPath(path).name.lower()
    return not any(word in name for word in _NOT_MODELS)


def _listed(ggufs: list[HubEntry]) -> str:
    names = ", ".join(f[0] for f in ggufs)
    return f"its GGUF files are: {names}" if names else "it has no GGUF files"


def _json(url: str, repo: str) -> Any:
    try:
        response = httpx.get(
            url, headers={**headers(), "Accept": "application/json"}, timeout=TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise HubError(f"{url}: cannot reach the Hub: {exc or type(exc).__name__}") from None
    if response.status_code in (401, 404):
        raise HubError(
            f"hf:{repo}: HTTP {response.status_code} from {url}; check the repo name, "
            "and for a gated repo set HF_TOKEN"
        )
    if response.status_code != 200:
        raise HubError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
    try:
        return response.json()
    except ValueError:
        raise HubError(f"{url}: not JSON") from None
