"""A model's ``source``: where its GGUF comes from, and the file names it gets locally.

Owns the grammar of a source (Ollama's library by short name, Hugging Face by repo and quant
or by file, an https URL) and the local names that follow from it without any network: the
model file, the parts of a split GGUF, the multimodal projector and the sidecar that keeps
the library's defaults. It downloads nothing (see ``corral.supervisor.pull``) and resolves
no quant against a file list (see ``corral.supervisor.pull.huggingface``).

The forms, as the tools they come from read them:
- ``ollama:[host/][namespace/]model[:tag]``, or the same without ``ollama:``: Ollama's
  ``types/model/name.go`` (namespace ``library`` and tag ``latest`` by default);
- ``hf:owner/repo[@revision][:QUANT]``: llama.cpp's ``-hf owner/repo:QUANT``;
- ``hf:owner/repo[@revision]/path/file.gguf``: one file of a repo;
- ``https://host/path/file.gguf``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from corral.generator.fields import NAME_PATTERN

OLLAMA_PREFIX = "ollama:"
HF_PREFIX = "hf:"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
GGUF = ".gguf"
#: Beside the model file: its source, and the library's parameters and system prompt, for
#: the loader (a pulled model's name, its defaults).
SIDECAR = ".library.json"

# Ollama's name parts: letters, digits, `_`, `.`, `-`; a namespace has no `.`.
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9_.-]+(?::\d+)?$")
_REPO = r"(?P<repo>[A-Za-z0-9_][\w.-]*/[A-Za-z0-9_][\w.-]*)(?:@(?P<revision>[\w.-]+))?"
_HF_QUANT = re.compile(rf"^{_REPO}(?::(?P<quant>[A-Za-z0-9_.-]+))?$")
_HF_FILE = re.compile(rf"^{_REPO}/(?P<file>[^@:]+\.gguf)$")


class SourceSyntaxError(ValueError):
    """A source that matches none of the forms; the message lists them."""


@dataclass(frozen=True)
class OllamaName:
    """A model of an Ollama registry: ``registry.ollama.ai/library/qwen2.5-coder:7b``."""

    host: str | None
    namespace: str
    model: str
    tag: str

    @property
    def path(self) -> str:
        """The registry path of the manifest and blobs: ``library/qwen2.5-coder``."""
        return f"{self.namespace}/{self.model}"


@dataclass(frozen=True)
class HubQuant:
    """A Hugging Face repo and the quant to pick from its files (None: llama.cpp's default)."""

    repo: str
    quant: str | None
    revision: str | None


@dataclass(frozen=True)
class HubFile:
    """One named file of a Hugging Face repo."""

    repo: str
    file: str
    revision: str | None


@dataclass(frozen=True)
class Url:
    url: str


ModelSource = OllamaName | HubQuant | HubFile | Url

FORMS = (
    "ollama:NAME[:TAG] (or NAME:TAG, Ollama's library), hf:owner/repo[:QUANT], "
    "hf:owner/repo/file.gguf or an https:// URL"
)


def parse(text: str) -> ModelSource:
    """``text`` as one of the source forms; a SourceSyntaxError says which forms exist."""
    if text.startswith(HF_PREFIX):
        rest = text[len(HF_PREFIX) :]
        file = _HF_FILE.match(rest)
        if file:
            return HubFile(file["repo"], file["file"], file["revision"])
        quant = _HF_QUANT.match(rest)
        if quant and not quant["repo"].endswith(GGUF):
            return HubQuant(quant["repo"], quant["quant"], quant["revision"])
        raise SourceSyntaxError(f"{text!r} is not hf:owner/repo[:QUANT] or hf:owner/repo/x.gguf")
    if "://" in text:
        if urlsplit(text).scheme in ("https", "http"):
            name = _url_name(text)
            problem = file_name_problem(name)
            if problem is not None:
                raise SourceSyntaxError(f"{text!r}: its file name {name!r} {problem}")
            return Url(text)
        raise SourceSyntaxError(f"{text!r}: only https:// URLs; must be one of {FORMS}")
    name = text[len(OLLAMA_PREFIX) :] if text.startswith(OLLAMA_PREFIX) else text
    parsed = _ollama_name(name)
    # `m.gguf` is a file name, not a model of the library.
    if parsed is None or ".." in name or name.endswith(GGUF):
        raise SourceSyntaxError(f"{text!r}: must be one of {FORMS}")
    return parsed


def _ollama_name(name: str) -> OllamaName | None:
    # As types/model/name.go's ParseNameBare: the tag after the last `:` (when it follows the
    # last `/`), then model, namespace and host from the right.
    tag = DEFAULT_TAG
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) > 3:
        return None
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = parts[0] if len(parts) == 3 else None
    if not (_PART.match(model) and _PART.match(tag) and _NAMESPACE.match(namespace)):
        return None
    if host is not None and not _HOST.match(host):
        return None
    return OllamaName(host, namespace, model, tag)


def stem(source: ModelSource) -> str:
    """The local file name without ``.gguf``, known before anything is downloaded."""
    if isinstance(source, OllamaName):
        prefix = "" if source.namespace == DEFAULT_NAMESPACE else f"{source.namespace}-"
        return f"{prefix}{source.model}-{source.tag}"
    if isinstance(source, HubQuant):
        name = source.repo.split("/")[1]
        return f"{name}-{source.quant}" if source.quant else name
    if isinstance(source, HubFile):
        return PurePosixPath(source.file).name.removesuffix(GGUF)
    return _url_name(source.url).removesuffix(GGUF)


def _url_name(url: str) -> str:
    # Decoded after the split: `%2f` is a `/` in the name, not between segments.
    return unquote(PurePosixPath(urlsplit(url).path).name)


#: What ``file_name_problem`` says of a name with control characters.
CONTROL = "has control characters (NUL?)"


def file_name_problem(name: str) -> str | None:
    """Why a download may not be saved under ``name`` in a models folder, or None.

    The one rule for every way a name comes in: a URL's last segment once decoded (config
    ``source``, ``/api/pull``, ``corral pull``), ``--name``, a registry's file list. A ``/``
    that appears only once ``%2f`` is decoded would write outside the folder and make
    folders on the way (``%2e%2e%2fx.gguf``).
    """
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return CONTROL
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        return "is not one file name in the models folder (a / or \\, or . or ..)"
    return None


def split_name(base: str, index: int, count: int) -> str:
    """llama.cpp's split naming, which its loader needs to find the other parts."""
    return f"{base}-{index:05d}-of-{count:05d}{GGUF}"


def mmproj_name(base: str) -> str:
    # The `mmproj` in the name keeps model discovery from serving it as a model.
    return f"mmproj-{base}{GGUF}"


def local_path(folder: Path, source: ModelSource) -> Path:
    """Where the model file of ``source`` lives in ``folder``: ``<stem>.gguf``, or the first
    part of a split download when that is what is there."""
    base = stem(source)
    whole = folder / f"{base}{GGUF}"
    if not whole.exists():
        firsts = sorted(
            folder.glob(f"{glob_escape(base)}-00001-of-[0-9][0-9][0-9][0-9][0-9]{GGUF}")
        )
        if len(firsts) == 1:
            return firsts[0]
    return whole


def companions(model_file: Path, source: ModelSource) -> tuple[Path | None, dict[str, Any]]:
    """The projector beside ``model_file`` (if pulled) and the library's recorded defaults."""
    base = stem(source)
    mmproj = model_file.with_name(mmproj_name(base))
    sidecar = model_file.with_name(f"{base}{SIDECAR}")
    defaults: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        defaults = loaded if isinstance(loaded, dict) else {}
    return (mmproj if mmproj.is_file() else None), defaults


def pulled_names(sidecar: Path) -> list[str]:
    """The names a pulled model is served by, from the source its ``sidecar`` records: the
    name Ollama lists for it (``gemma3:270m``; ``gemma3:latest`` for ``gemma3``), then the
    text as it was pulled. None for a URL, or without a readable sidecar."""
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("source")
        source = parse(recorded)
    except (OSError, ValueError, AttributeError, TypeError):  # SourceSyntaxError is one
        return []
    if isinstance(source, Url):
        return []
    name = recorded
    if isinstance(source, OllamaName):
        name = f"{source.model}:{source.tag}"
        if source.namespace != DEFAULT_NAMESPACE or source.host is not None:
            name = f"{source.namespace}/{name}"
        if source.host is not None:
            name = f"{source.host}/{name}"
    return [n for n in dict.fromkeys([name, recorded]) if re.match(NAME_PATTERN, n)]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
