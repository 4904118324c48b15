"""Ollama's model options, as corral's settings: the one mapping for every way in.

Owns the names and types of Ollama's options (``api/types.go``: ``Options`` and its
``Runner``), which of them only take effect when a server starts (``num_ctx``, ``num_gpu``,
...), the ones llama-server spells differently (``num_predict`` -> ``max_tokens``), and
``to_parameters``: options as request defaults, the way Ollama's API maps a request's
``options``. The Ollama routes (``options``), the store (``params`` layers), the pull
sidecar and ``corral import-modelfile`` (``PARAMETER``) all go through it. It reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Options that set how the server starts; a request cannot change a running llama-server's.
LOAD_TIME = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all"}
    | {"vocab_only", "use_mmap", "use_mlock", "numa", "num_thread", "embedding_only"}
    | {"draft_num_predict"}
)
#: Ollama option names that llama-server spells differently; the rest pass as they are.
RENAMED = {"num_predict": "max_tokens", "num_keep": "n_keep"}

#: ``api/types.go``'s ``Options`` and ``Runner`` fields by JSON name: the type a Modelfile's
#: ``PARAMETER`` value is parsed as (``api.FormatParams``). ``stop`` is a list: every
#: ``PARAMETER stop`` line adds one.
TYPES: dict[str, type] = {
    **dict.fromkeys(
        ("num_keep", "seed", "num_predict", "top_k", "repeat_last_n"),
        int,
    ),
    **dict.fromkeys(
        (
            "top_p",
            "min_p",
            "typical_p",
            "temperature",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
        ),
        float,
    ),
    "stop": list,
    **dict.fromkeys(
        ("num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict"), int
    ),
    "use_mmap": bool,
}
#: Options Ollama still parses but ignores, with a warning (``parser.go``'s
#: ``deprecatedParameters``).
DEPRECATED = frozenset(
    {"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock"}
    | {"mirostat", "mirostat_tau", "mirostat_eta"}
)


def to_parameters(options: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama options as corral's ``parameters`` (request fields), as a request's ``options``
    are sent: load-time options and nulls left out, ``num_predict`` below 0 (no limit, or
    fill the context: llama-server's default) left out, the rest renamed where llama-server
    spells them differently."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = str(key)
        if name in LOAD_TIME or value is None:
            continue
        if name == "num_predict" and isinstance(value, int | float) and value < 0:
            continue
        out[RENAMED.get(name, name)] = value
    return out
