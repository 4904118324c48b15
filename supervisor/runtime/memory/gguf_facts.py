"""What a GGUF header says about a model's memory: tensor sizes and attention shapes.

Owns the translation of GGUF metadata (``{arch}.block_count``, ``attention.head_count_kv``,
``sliding_window`` …) into a plain ``Facts`` object. It is a view: the header is read and
cached per file by ``gguf_info``, corral's one reader. It does not estimate anything (see
``memory``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.supervisor.runtime.memory import gguf_info
from corral.supervisor.runtime.memory.gguf_info import GGUFError

__all__ = ["SWA_PATTERNS", "Facts", "GGUFError", "from_metadata", "read"]

#: llama.cpp's built-in sliding-window layouts (src/llama-model.cpp, ``set_swa_pattern``) for
#: architectures whose GGUF carries ``sliding_window`` but no ``sliding_window_pattern``:
#: with pattern n, every n-th layer attends to the whole context, the others to the window.
SWA_PATTERNS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}


@dataclass(frozen=True)
class Facts:
    """The shapes that decide a model's memory, per layer where they may vary."""

    architecture: str
    block_count: int
    embedding_length: int
    head_count: int
    #: KV heads per layer; 0 for a layer without attention (recurrent layers of hybrids).
    head_count_kv: tuple[int, ...]
    key_length: int
    value_length: int
    feed_forward_length: int
    vocab_size: int
    #: Tokens a sliding-window layer keeps; 0 = no sliding window.
    sliding_window: int
    #: Per layer: True when that layer uses the sliding window.
    swa_layers: tuple[bool, ...]
    expert_count: int
    expert_used_count: int
    expert_feed_forward_length: int
    #: (name, bytes) of every tensor, as stored in the file.
    tensors: tuple[tuple[str, int], ...]

    @property
    def tensor_bytes(self) -> int:
        return sum(size for _, size in self.tensors)


def from_metadata(metadata: Mapping[str, Any], tensors: Iterable[tuple[str, int]]) -> Facts:
    """Facts from a header's key/values (arrays as lists; the token list may be its length).

    Missing keys fall back the way llama.cpp does: key and value length to
    embedding_length / head_count, KV heads to head_count.
    """
    arch = str(metadata.get("general.architecture", "llama"))

    def get(key: str, default: Any = 0) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    layers = int(get("block_count"))
    embedding = int(get("embedding_length"))
    heads = _first(get("attention.head_count", 0))
    head_dim = embedding // heads if heads else 0
    kv_heads = _per_layer(get("attention.head_count_kv", heads), layers)
    tokens = metadata.get("tokenizer.ggml.tokens", ())
    vocab = tokens if isinstance(tokens, int) else len(tokens)
    window = int(get("attention.sliding_window", 0))
    return Facts(
        architecture=arch,
        block_count=layers,
        embedding_length=embedding,
        head_count=heads,
        head_count_kv=kv_heads,
        key_length=int(get("attention.key_length", head_dim)),
        value_length=int(get("attention.value_length", head_dim)),
        feed_forward_length=_first(get("feed_forward_length", 0)),
        vocab_size=int(get("vocab_size", vocab)),
        sliding_window=window,
        swa_layers=_swa_layers(arch, get("attention.sliding_window_pattern", None), window, layers),
        expert_count=int(get("expert_count", 0)),
        expert_used_count=int(get("expert_used_count", 0)),
        expert_feed_forward_length=int(get("expert_feed_forward_length", 0)),
        tensors=tuple((name, int(size)) for name, size in tensors),
    )


def read(path: Path) -> Facts:
    """The facts of ``path``'s header, as ``gguf_info`` read it (once per file version).

    Tensor sizes use the ``gguf`` package's table of block sizes. Raises ``GGUFError``
    (``gguf_info``'s) for a file that is missing, unreadable or not a GGUF.
    """
    constants = gguf_info.gguf_constants()
    sizes, kinds = constants.GGML_QUANT_SIZES, constants.GGMLQuantizationType
    try:
        info = gguf_info.read(path)
    except OSError as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({exc})") from None
    tensors = []
    for tensor in info.tensors:
        try:
            block, size = sizes[kinds(tensor.kind)]
        except (KeyError, ValueError):
            unknown = f"{path}: tensor {tensor.name} has unknown type {tensor.kind}"
            raise GGUFError(unknown) from None
        tensors.append((tensor.name, math.prod(tensor.shape) // block * size))
    tokens = info.array_lengths.get("tokenizer.ggml.tokens", 0)
    return from_metadata({**info.metadata, **info.arrays, "tokenizer.ggml.tokens": tokens}, tensors)


def _first(value: Any) -> int:
    """A per-layer array's largest entry, or the scalar itself."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return int(max(value, default=0))
    return int(value)


def _per_layer(value: Any, layers: int) -> tuple[int, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(int(v) for v in value)
    return (int(value),) * layers


def _swa_layers(arch: str, pattern: Any, window: int, layers: int) -> tuple[bool, ...]:
    if window <= 0:
        return (False,) * layers
    if isinstance(pattern, Sequence) and not isinstance(pattern, str):
        return tuple(bool(p) for p in pattern)
    period = int(pattern) if pattern is not None else SWA_PATTERNS.get(arch)
    if period is None:
        # A window llama.cpp does not apply for this architecture: the full cache, which is
        # the larger (the safe) figure.
        return (False,) * layers
    # llama.cpp's set_swa_pattern(n): layer il is windowed unless il % n == n - 1.
    return tuple(period == 0 or il % period < period - 1 for il in range(layers))
