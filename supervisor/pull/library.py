"""Pulling a model by its source: from a short name to verified files in a models folder.

Owns the plan (which files a source means, their local names, sizes and sha256, and the
defaults that come with them), carrying it out through ``download.pull`` (resume, digest
check, atomic rename), the sidecar that keeps the library's defaults beside the file, the
warning for a GGUF without a chat template, and ``ensure_present``: the auto_pull hook of
the load path. The registries' protocols are ``ollama_registry``'s and ``huggingface``'s.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.generator import model_source
from corral.generator.loader import with_source_files
from corral.generator.model_settings import ModelConfig
from corral.generator.model_source import HubFile, HubQuant, OllamaName, Url
from corral.supervisor.errors import StartFailed
from corral.supervisor.pull import download, gguf_meta, huggingface, ollama_registry, progress
from corral.supervisor.pull import sources as url_sources

MODEL = "model"
MMPROJ = "mmproj"

#: Errors a pull reports to a person as they are.
ERRORS = (
    url_sources.SourceError,
    download.PullError,
    ollama_registry.RegistryError,
    huggingface.HubError,
    model_source.SourceSyntaxError,
)


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its role, local name, URL, size and sha256 (if published)."""

    role: str
    name: str
    url: str
    size: int | None
    sha256: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What a source means, resolved against its registry, before any large download."""

    source: str
    stem: str
    files: tuple[RemoteFile, ...]
    defaults: dict[str, Any]
    notes: tuple[str, ...] = ()

    @property
    def model_file(self) -> RemoteFile:
        return next(f for f in self.files if f.role == MODEL)


def resolve(text: str, registry: str | None = None) -> Plan:
    """Ask the registry what ``text`` means; large files are only named, not fetched."""
    source = model_source.parse(text)
    stem = model_source.stem(source)
    if isinstance(source, OllamaName):
        return _from_ollama(text, source, stem, registry)
    if isinstance(source, HubQuant | HubFile):
        return _from_hub(text, source, stem)
    return _from_url(text, source, stem)


def fetch(
    plan: Plan,
    folder: Path,
    *,
    force: bool = False,
    make_progress: Callable[[RemoteFile], progress.ProgressFactory] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> list[download.Pulled]:
    """Download every file of ``plan`` into ``folder``, each checked against its sha256."""
    pulled = []
    for remote in plan.files:
        problem = model_source.file_name_problem(remote.name)
        if problem is not None:  # a registry's listing, or a name the plan was given
            raise model_source.SourceSyntaxError(
                f"{remote.url}: file name {remote.name!r} {problem}"
            )
        origin = url_sources.Source(remote.url, remote.name, remote.headers)
        pulled.append(
            download.pull(
                origin,
                folder / remote.name,
                sha256=remote.sha256,
                force=force,
                make_progress=make_progress(remote) if make_progress else progress.make,
                say=say,
            )
        )
    # Always: the source in it names the model as it was pulled (loader.discover).
    _write_sidecar(folder / f"{plan.stem}{model_source.SIDECAR}", plan)
    return pulled


def template_warning(model_file: Path, chat_template: str | None = None) -> str | None:
    """A warning when neither the GGUF nor the config gives llama-server a chat template."""
    if chat_template is not None:
        return None
    try:
        if gguf_meta.has_chat_template(model_file):
            return None
    except (OSError, ValueError) as exc:
        return f"{model_file.name}: cannot read its GGUF header ({exc}); is it a GGUF?"
    return (
        f"{model_file.name} has no chat template in its GGUF (tokenizer.chat_template): "
        "llama-server would fall back to ChatML and answer garbage. Set the model's "
        "chat_template (a llama.cpp built-in name such as gemma, or a Jinja file)"
    )


def defaults_note(plan: Plan, sidecar: Path) -> str | None:
    """Says which library defaults corral recorded, and that the config's own win."""
    if not plan.defaults:
        return None
    parts = []
    if "parameters" in plan.defaults:
        parts.append(f"parameters {json.dumps(plan.defaults['parameters'], sort_keys=True)}")
    if "system_prompt" in plan.defaults:
        parts.append(f"system prompt ({len(plan.defaults['system_prompt'])} characters)")
    return (
        f"library defaults recorded in {sidecar}: {', '.join(parts)}; they become the model's "
        "`parameters`/`system_prompt` defaults, and the config's own values win"
    )


def ensure_present(
    model: ModelConfig,
    say: Callable[[str], None] = lambda m: None,
    make_progress: Callable[[RemoteFile], progress.ProgressFactory] | None = None,
) -> ModelConfig:
    """``model`` with its file there: pulled from its ``source`` first when it is missing.

    The auto_pull hook of the load path. A model without a source, or whose file is there,
    comes back as it is; otherwise it comes back as the loader would have read it had the
    files been there (its ``--mmproj`` and the library's defaults included).
    """
    if model.source is None or model.path is None or model.path.exists():
        return model
    folder = model.path.parent
    plan = resolve(model.source)
    parts = [f for f in plan.files if f.role == MODEL]
    # `path` named the file itself: a single-file model is saved under that name.
    renamed = len(parts) == 1 and model.path.name != parts[0].name
    if renamed:
        plan = Plan(
            plan.source,
            plan.stem,
            tuple(_named(f, model.path.name) if f.role == MODEL else f for f in plan.files),
            plan.defaults,
            plan.notes,
        )
    say(f"{model.name}: pulling {model.source} into {folder}")
    fetch(plan, folder, say=say, make_progress=make_progress)
    source = model_source.parse(model.source)
    path = model.path if renamed else model_source.local_path(folder, source)
    warning = template_warning(path, model.chat_template)
    if warning is not None:
        say(f"{model.name}: {warning}")
    return with_source_files(model.model_copy(update={"path": path}), folder)


def _named(remote: RemoteFile, name: str) -> RemoteFile:
    return RemoteFile(remote.role, name, remote.url, remote.size, remote.sha256, remote.headers)


def _from_ollama(text: str, name: OllamaName, stem: str, registry: str | None) -> Plan:
    manifest = ollama_registry.fetch_manifest(name, registry)
    layer = manifest.first(ollama_registry.MODEL)
    if layer is None:
        raise ollama_registry.RegistryError(
            f"{name.path}:{name.tag}: its manifest has no {ollama_registry.MODEL} layer "
            "(a GGUF); corral can serve only GGUF models"
        )
    files = [RemoteFile(MODEL, f"{stem}.gguf", manifest.blob_url(layer), layer.size, layer.sha256)]
    projector = manifest.first(ollama_registry.PROJECTOR)
    if projector is not None:
        files.append(
            RemoteFile(
                MMPROJ,
                model_source.mmproj_name(stem),
                manifest.blob_url(projector),
                projector.size,
                projector.sha256,
            )
        )
    notes: tuple[str, ...] = ()
    if manifest.first(ollama_registry.TEMPLATE) is not None:
        notes = (
            "Ollama's template layer is a Go template, which llama-server cannot run; "
            "corral uses the GGUF's own chat template",
        )
    return Plan(text, stem, tuple(files), ollama_registry.defaults(manifest), notes)


def _from_hub(text: str, source: HubQuant | HubFile, stem: str) -> Plan:
    found = huggingface.listing(source.repo, source.revision)
    chosen = huggingface.choose(source, found)
    auth = huggingface.headers()
    files = []
    count = len(chosen.parts)
    for index, (path, size, sha) in enumerate(chosen.parts, start=1):
        if isinstance(source, HubFile):
            local = Path(path).name
        elif count == 1:
            local = f"{stem}.gguf"
        else:
            local = model_source.split_name(stem, index, count)
        files.append(RemoteFile(MODEL, local, found.url(path), size, sha, auth))
    if chosen.mmproj is not None:
        path, size, sha = chosen.mmproj
        files.append(
            RemoteFile(MMPROJ, model_source.mmproj_name(stem), found.url(path), size, sha, auth)
        )
    return Plan(text, stem, tuple(files), {})


def _from_url(text: str, source: Url, stem: str) -> Plan:
    url_sources.check_url(source.url)
    return Plan(text, stem, (RemoteFile(MODEL, f"{stem}.gguf", source.url, None, None),), {})


def _write_sidecar(path: Path, plan: Plan) -> None:
    # Written whole, then renamed: a reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({"source": plan.source, **plan.defaults}, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    os.replace(tmp, path)


async def present(model: ModelConfig, say: Callable[[str], None]) -> ModelConfig:
    """``ensure_present`` off the event loop, for the service's auto_pull: a failure is a
    ``StartFailed`` that names the model and the source, as a failed load is."""
    try:
        return await asyncio.to_thread(ensure_present, model, say)
    except ERRORS as exc:
        raise StartFailed(f"model {model.name!r}: pulling {model.source} failed: {exc}") from exc
