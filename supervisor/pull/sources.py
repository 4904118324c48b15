"""What ``corral pull`` is asked to fetch: SOURCE as a URL, the saved file's name, its digest.

Owns the accepted forms of SOURCE (an https URL; plain http only on loopback, for tests;
``hf:owner/repo[@revision]/path/file.gguf``), the mapping of ``hf:`` to a Hugging Face download
URL through huggingface_hub (an optional import), and the checks on ``--name`` and ``--sha256``.
It downloads nothing (see ``download``).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import ModuleType
from urllib.parse import unquote, urlsplit

from corral.generator import model_source

#: Hosts that may be reached over plain http: only this machine, where no one can tamper.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
HF_PREFIX = "hf:"
SUFFIX = ".gguf"

# The shape of huggingface_hub's own HfFileSystem paths: owner/repo[@revision]/path/in/repo.
_HF = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>[^/]+))?/(?P<file>[^@]+)$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class SourceError(Exception):
    """A SOURCE, ``--name`` or ``--sha256`` that cannot be used; says what is allowed."""


@dataclass(frozen=True)
class Source:
    """Where to download from, the file name it suggests, and headers it needs (a token)."""

    url: str
    filename: str
    headers: dict[str, str] = field(default_factory=dict)


def parse(source: str) -> Source:
    """``https://…/x.gguf`` or ``hf:owner/repo/x.gguf`` as a URL to download."""
    if source.startswith(HF_PREFIX):
        return _from_hub(source)
    check_url(source)
    return Source(url=source, filename=unquote(PurePosixPath(urlsplit(source).path).name))


def check_url(url: str) -> None:
    """Refuse anything but https, and http to loopback; also applied to every redirect."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return
    if parts.scheme == "http":
        raise SourceError(
            f"{url}: plain http is allowed only for 127.0.0.1 and localhost; use https://"
        )
    raise SourceError(
        f"{url!r}: SOURCE must be an https:// URL or hf:owner/repo/file.gguf "
        "(hf:owner/repo@revision/file.gguf pins a revision)"
    )


def file_name(source: Source, name: str | None) -> str:
    """The name to save under: ``--name``, else the URL's last segment; a ``*.gguf`` either way.

    corral serves only ``*.gguf`` files, so a download saved under any other name would sit in
    models_path unserved, and a name with a ``/`` would land outside it.
    """
    chosen = name if name is not None else source.filename
    problem = model_source.file_name_problem(chosen)
    if problem == model_source.CONTROL:
        where = "--name" if name is not None else source.url
        raise SourceError(f"{where}: the file name {chosen!r} {problem}")
    if problem is None and chosen.endswith(SUFFIX) and len(chosen) > len(SUFFIX):
        return chosen
    if problem is not None and name is None:
        raise SourceError(f"{source.url}: its file name {chosen!r} {problem}; pass --name")
    if name is not None:
        raise SourceError(f"--name: must be a file name ending in {SUFFIX}, got {name!r}")
    raise SourceError(
        f"{source.url}: its file name {chosen!r} does not end in {SUFFIX}; "
        f"pass --name NAME{SUFFIX} to choose one"
    )


def check_sha256(value: str) -> str:
    """``--sha256`` as 64 lower-case hex digits, the form ``sha256sum`` prints."""
    if not _SHA256.match(value):
        raise SourceError(f"--sha256: must be 64 hex digits, got {value!r}")
    return value.lower()


def _from_hub(source: str) -> Source:
    match = _HF.match(source[len(HF_PREFIX) :])
    if match is None:
        raise SourceError(
            f"{source!r}: must be hf:owner/repo/file.gguf "
            "or hf:owner/repo@revision/file.gguf (a path inside the repo may have folders)"
        )
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError:
        raise SourceError(
            f"{source}: hf: sources need huggingface_hub: pip install huggingface_hub"
        ) from None
    # hf_hub_url honours HF_ENDPOINT (a mirror); its URL is then checked like any other.
    url = str(
        hub.hf_hub_url(repo_id=match["repo"], filename=match["file"], revision=match["revision"])
    )
    check_url(url)
    token = _token(hub)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Source(url=url, filename=PurePosixPath(match["file"]).name, headers=headers)


def _token(hub: ModuleType) -> str | None:
    # Gated repositories (Llama, Gemma) answer 401 without the token `huggingface-cli login`
    # stored. httpx drops the header when a redirect leaves huggingface.co for its CDN.
    get_token = getattr(hub, "get_token", None)
    token = get_token() if callable(get_token) else None
    return str(token) if token else os.environ.get("HF_TOKEN") or None
