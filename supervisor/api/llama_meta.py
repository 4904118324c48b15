"""What llama-server says of a model in its own lists, read from the GGUF header without
loading the model: ``/v1/models``' ``meta`` and the router's ``architecture``.

Owns the mapping from header keys to llama-server's fields, as its ``model_meta()`` and
the router's ``/models`` fill them: ``vocab_type`` as llama.cpp's ``llama_vocab_type``,
``ftype`` as ``llama_model_ftype_name`` words it (the short name where this table has no
words), ``size`` as the tensors' bytes. Pure, apart from ``read``, which reads the header
(cached per file; run it off the event loop).
"""

from __future__ import annotations

from typing import Any

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import gguf_facts, gguf_info

#: ``tokenizer.ggml.model`` -> ``llama_vocab_type`` (llama.h).
VOCAB_TYPES = {"no_vocab": 0, "none": 0, "llama": 1, "gpt2": 2, "bert": 3, "t5": 4, "rwkv": 5}
#: ``llama_model_ftype_name``'s words for the file types that are not just their name.
FTYPE_WORDS = {
    "F32": "all F32",
    "Q2_K": "Q2_K - Medium",
    "Q2_K_S": "Q2_K - Small",
    "Q3_K_S": "Q3_K - Small",
    "Q3_K_M": "Q3_K - Medium",
    "Q3_K_L": "Q3_K - Large",
    "Q4_K_S": "Q4_K - Small",
    "Q4_K_M": "Q4_K - Medium",
    "Q5_K_S": "Q5_K - Small",
    "Q5_K_M": "Q5_K - Medium",
    "MXFP4_MOE": "MXFP4 MoE",
}


def read(model: ModelConfig) -> dict[str, Any] | None:
    """``model``'s ``meta``; None for a ``cmd`` model or an unreadable file (llama-server's
    own ``meta`` is null while it loads)."""
    if model.path is None:
        return None
    try:
        return meta(model, gguf_info.read(model.path), gguf_facts.read(model.path))
    except (OSError, gguf_info.GGUFError):
        return None


def meta(model: ModelConfig, info: gguf_info.GGUFInfo, facts: gguf_facts.Facts) -> dict[str, Any]:
    """llama-server's ``meta`` of a model served with ``model``'s context size."""
    tokenizer = info.metadata.get("tokenizer.ggml.model")
    trained = info.arch_value("context_length")
    return {
        "vocab_type": VOCAB_TYPES.get(tokenizer, 0) if isinstance(tokenizer, str) else 0,
        "n_vocab": info.array_lengths.get("tokenizer.ggml.tokens", 0),
        "n_ctx": model.context_size,
        "n_ctx_train": trained if isinstance(trained, int) else 0,
        "n_embd": facts.embedding_length,
        "n_params": info.parameter_count,
        "size": facts.tensor_bytes,
        "ftype": FTYPE_WORDS.get(info.file_type, info.file_type),
    }


def architecture(model: ModelConfig) -> dict[str, list[str]]:
    """The router's ``architecture``: what goes in and out (images with a projector)."""
    inputs = ["text", "image"] if "--mmproj" in model.args else ["text"]
    return {"input_modalities": inputs, "output_modalities": ["text"]}
