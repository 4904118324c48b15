"""The model entries of Ollama's /api/tags, /api/ps and /api/show, from corral's config and
the facts the routes read from each file (size, modification time, GGUF header, template).

Pure, apart from ``read_header_facts``, which reads the GGUF header and the template for
``/api/show`` (cached per file by ``gguf_info``; run it off the event loop).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.generator.model_settings import ModelConfig
from corral.supervisor.api.ollama.answers import now_text
from corral.supervisor.api.ollama.requests import RENAMED
from corral.supervisor.runtime.child import chat_templates
from corral.supervisor.runtime.memory import gguf_info
from corral.supervisor.runtime.memory.offload import RunsOn

#: Go's largest Duration in seconds: Ollama's expiry for a model kept loaded for good, which
#: clients (the ollama CLI among them) recognise and show as "Forever".
FOREVER_S = (2**63 - 1) / 1e9


@dataclass(frozen=True)
class FileFacts:
    """What the routes read from a model's file: its size and modification time."""

    size: int
    mtime: float


@dataclass(frozen=True)
class HeaderFacts:
    """What ``/api/show`` reads beyond the config: the GGUF header (None for a ``cmd`` model
    or an unreadable file), the template text and why the model cannot call tools."""

    info: gguf_info.GGUFInfo | None
    template: str | None
    tools_refusal: str | None


def read_header_facts(model: ModelConfig) -> HeaderFacts:
    info = None
    if model.path is not None:
        try:
            info = gguf_info.read(model.path)
        except (OSError, gguf_info.GGUFError):
            info = None  # a missing or foreign file shows as no details, as with `cmd`
    try:
        template, _ = chat_templates.template_text(model)
    except (OSError, gguf_info.GGUFError):
        template = None
    return HeaderFacts(info, template, chat_templates.tools_refusal(model))


#: corral's parameter names (OpenAI's) as Ollama's clients read them in /api/show.
_OLLAMA_NAMES = {openai: ollama for ollama, openai in RENAMED.items()}
#: Ollama's column for parameter names in /api/show (`fmt.Sprintf("%-*s %#v", 30, k, v)`).
_NAME_WIDTH = 30

_QUANT = re.compile(r"(?i)(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|f16|bf16|f32)(?![a-z0-9])")


def details(model: ModelConfig, info: gguf_info.GGUFInfo | None = None) -> dict[str, Any]:
    """Ollama's ``details``; without the GGUF header, the quantization is guessed from the
    file name."""
    stem = model.path.name if model.path is not None else model.name
    quant = _QUANT.findall(stem)
    family = info.architecture if info is not None else ""
    return {
        "parent_model": model.from_ or "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else None,
        "parameter_size": human_number(info.parameter_count) if info is not None else "",
        "quantization_level": (info.file_type if info is not None else "")
        or (quant[-1].upper() if quant else ""),
    }


def human_number(count: int) -> str:
    """Ollama's ``format.HumanNumber``: 268098176 -> "268.10M", 8e9 -> "8B"."""
    for unit, size, digits in (("B", 1e9, 1), ("M", 1e6, 2)):
        if count >= size:
            number = count / size
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{digits}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1000 else str(count)


def digest(model: ModelConfig, facts: FileFacts) -> str:
    """A stable stand-in for Ollama's manifest digest: it changes when the file does.

    Hashing the file itself would read gigabytes on every model list.
    """
    key = f"{model.path}\0{facts.size}\0{facts.mtime}"
    return hashlib.sha256(key.encode()).hexdigest()


def tag_entry(model: ModelConfig, facts: FileFacts) -> dict[str, Any]:
    """One model in ``/api/tags``; a model of Ollama's store as Ollama lists it: its
    manifest's digest, time and size (every layer), and the details of its config blob."""
    store = model.ollama
    if store is not None:
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": now_text(store.modified),
            "size": store.size,
            "digest": store.digest,
            "details": {**details(model), **store.details},
        }
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": now_text(facts.mtime),
        "size": facts.size,
        "digest": digest(model, facts),
        "details": details(model),
    }


def ps_entry(
    model: ModelConfig,
    facts: FileFacts,
    expires_at: float | None,
    now: float,
    memory: Mapping[str, int] | None = None,
    runs_on: RunsOn | None = None,
) -> dict[str, Any]:
    """One running model in ``/api/ps``; ``expires_at`` None means it never unloads.

    ``size`` is the model's memory and ``size_vram`` its GPUs' part, as Ollama reports
    them: what its child allocated per device (``runs_on``, read from its log), else bytes
    per device in ``memory`` (declared, measured or estimated). Unknown (a ``cmd`` without
    ``memory``): the file size, on the GPU unless no layer is offloaded. ``runs_on`` and
    ``warning`` say where it really runs, and how that differs from what was asked.
    """
    entry = tag_entry(model, facts)
    del entry["modified_at"]
    entry["expires_at"] = now_text(now + FOREVER_S if expires_at is None else expires_at)
    if runs_on is not None:
        memory = runs_on.by_device
        entry["runs_on"] = runs_on.devices
        entry["warning"] = runs_on.warning
    if memory:
        entry["size"] = sum(memory.values())
        entry["size_vram"] = sum(b for device, b in memory.items() if device != "cpu")
    else:
        entry["size_vram"] = 0 if model.gpu_layers == 0 else facts.size
    entry["context_length"] = model.context_size
    return entry


def show_answer(model: ModelConfig, facts: FileFacts, header: HeaderFacts) -> dict[str, Any]:
    """``/api/show``: the entry as a Modelfile, its parameters (``num_ctx`` first), the GGUF
    header's details and ``model_info`` the way Ollama fills them, the template text and
    what the model can do."""
    pairs = [("num_ctx", model.context_size)]
    pairs += [(_OLLAMA_NAMES.get(k, k), v) for k, v in model.parameters.items()]
    lines = [f"FROM {model.path or model.name}"]
    lines += [f"PARAMETER {k} {json.dumps(v)}" for k, v in pairs]
    if model.system_prompt:
        lines.append(f'SYSTEM """{model.system_prompt}"""')
    return {
        "modelfile": "\n".join(lines) + "\n",
        "parameters": "\n".join(f"{k:<{_NAME_WIDTH}} {json.dumps(v)}" for k, v in pairs),
        "template": header.template or model.chat_template or "",
        "system": model.system_prompt or "",
        "details": details(model, header.info),
        "model_info": model_info(model, header.info),
        "capabilities": capabilities(model, header),
        "modified_at": now_text(facts.mtime),
    }


def model_info(model: ModelConfig, info: gguf_info.GGUFInfo | None) -> dict[str, Any]:
    """The GGUF header as Ollama shows it: every key but the name and the template, arrays
    as null, plus ``general.parameter_count``. ``<arch>.context_length`` is the context the
    model is served with, when that is less than it was trained for: editors size their
    prompts from it, and llama-server refuses a prompt longer than its ``-c``."""
    if info is None:
        return {}
    out = {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in info.metadata.items()
        if key not in ("general.name", "tokenizer.chat_template")
    }
    out["general.parameter_count"] = info.parameter_count
    trained = info.arch_value("context_length")
    if isinstance(trained, int) and model.context_size < trained:
        out[f"{info.architecture}.context_length"] = model.context_size
    return out


def capabilities(model: ModelConfig, header: HeaderFacts) -> list[str]:
    """Ollama's capability words: completion, embedding, tools, insert, thinking, vision."""
    info, template = header.info, header.template or ""
    meta = info.metadata if info is not None else {}
    embedding_only = info is not None and info.arch_value("pooling_type") is not None
    found = [] if embedding_only else ["completion"]
    if embedding_only or any(a in ("--embeddings", "--embedding") for a in model.args):
        found.append("embedding")
    if not embedding_only and header.tools_refusal is None:
        found.append("tools")
    if "tokenizer.ggml.fim_pre_token_id" in meta:
        found.append("insert")  # llama-server's /infill needs the FIM tokens
    if "enable_thinking" in template or "<think>" in template:
        found.append("thinking")
    if "--mmproj" in model.args:
        found.append("vision")
    return found
