"""The model entries of Ollama's /api/tags, /api/ps and /api/show, from corral's config and
the facts the routes read from each file (size, modification time). Pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.generator.settings import ModelConfig
from corral.supervisor.api.ollama.answers import now_text

#: Go's largest Duration in seconds: Ollama's expiry for a model kept loaded for good, which
#: clients (the ollama CLI among them) recognise and show as "Forever".
FOREVER_S = (2**63 - 1) / 1e9


@dataclass(frozen=True)
class FileFacts:
    """What the routes read from a model's file: its size and modification time."""

    size: int
    mtime: float


_QUANT = re.compile(r"(?i)(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|f16|bf16|f32)(?![a-z0-9])")


def details(model: ModelConfig) -> dict[str, Any]:
    stem = model.path.name if model.path is not None else model.name
    quant = _QUANT.findall(stem)
    return {
        "parent_model": model.from_ or "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": quant[-1].upper() if quant else "",
    }


def digest(model: ModelConfig, facts: FileFacts) -> str:
    """A stable stand-in for Ollama's manifest digest: it changes when the file does.

    Hashing the file itself would read gigabytes on every model list.
    """
    key = f"{model.path}\0{facts.size}\0{facts.mtime}"
    return hashlib.sha256(key.encode()).hexdigest()


def tag_entry(model: ModelConfig, facts: FileFacts) -> dict[str, Any]:
    """One model in ``/api/tags``."""
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
) -> dict[str, Any]:
    """One running model in ``/api/ps``; ``expires_at`` None means it never unloads.

    ``size`` is the model's memory (bytes per device in ``memory``: declared, measured or
    estimated) and ``size_vram`` its GPUs' part, as Ollama reports them. Unknown (a ``cmd``
    without ``memory``): the file size, on the GPU unless no layer is offloaded.
    """
    entry = tag_entry(model, facts)
    del entry["modified_at"]
    entry["expires_at"] = now_text(now + FOREVER_S if expires_at is None else expires_at)
    if memory:
        entry["size"] = sum(memory.values())
        entry["size_vram"] = sum(b for device, b in memory.items() if device != "cpu")
    else:
        entry["size_vram"] = 0 if model.gpu_layers == 0 else facts.size
    entry["context_length"] = model.context_size
    return entry


def show_answer(model: ModelConfig, facts: FileFacts) -> dict[str, Any]:
    """``/api/show``: the entry rendered as a Modelfile, its parameters and details."""
    parameters = "\n".join(f"{k} {json.dumps(v)}" for k, v in model.parameters.items())
    lines = [f"FROM {model.path or model.name}"]
    lines += [f"PARAMETER {line}" for line in parameters.splitlines()]
    if model.system_prompt:
        lines.append(f'SYSTEM """{model.system_prompt}"""')
    capabilities = ["completion"]
    if any(a in ("--embeddings", "--embedding") for a in model.args):
        capabilities.append("embedding")
    return {
        "modelfile": "\n".join(lines) + "\n",
        "parameters": parameters,
        "template": model.chat_template or "",
        "system": model.system_prompt or "",
        "details": details(model),
        "model_info": {},  # the GGUF header is not read (yet): no architecture to report
        "capabilities": capabilities,
        "modified_at": now_text(facts.mtime),
    }
