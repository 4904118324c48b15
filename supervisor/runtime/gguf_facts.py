"""What a GGUF header says about a model's memory: tensor sizes and attention shapes.

Owns the translation of GGUF metadata (``{arch}.block_count``, ``attention.head_count_kv``,
``sliding_window`` …) into a plain ``Facts`` object, and reading a file's header with the
``gguf`` package. It does not estimate anything (see ``memory``) and keeps no cache: a
shared header cache can hand its metadata and tensor list to ``from_metadata`` instead.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class GGUFError(ValueError):
    """A file that is not a GGUF this reader understands; the message names the file."""


def read(path: Path) -> Facts:
    """Read ``path``'s header (memory-mapped: the tensor data is never read).

    Not ``gguf.GGUFReader``: it builds numpy views of every token of the vocabulary, which
    took 15 s of CPU for the demo's 262144 tokens; this walks the header in well under one.
    Tensor sizes use the ``gguf`` package's table of block sizes.
    """
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = _Header(data)
            metadata, infos = header.read()
    except (OSError, ValueError, struct.error, IndexError) as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({exc})") from None
    tensors = []
    for name, dims, kind in infos:
        try:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (KeyError, ValueError):
            raise GGUFError(f"{path}: tensor {name} has unknown type {kind}") from None
        tensors.append((name, math.prod(dims) // block * size))
    return from_metadata(metadata, tensors)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS |= {10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Header:
    """A cursor over a GGUF (v2, v3) header: key/values, then tensor infos."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def read(self) -> tuple[dict[str, Any], list[tuple[str, list[int], int]]]:
        if self.data[:4] != b"GGUF":
            raise ValueError("no GGUF magic")
        self.pos = 4
        version, n_tensors, n_kv = self._take("<I"), self._take("<Q"), self._take("<Q")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version}")
        metadata = {}
        for _ in range(n_kv):
            key = self._string()
            # The vocabulary is big and only its length matters here: count, don't decode.
            metadata[key] = self._value(self._take("<I"), keep=not key.startswith("tokenizer."))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._take("<Q") for _ in range(self._take("<I"))]
            kind = self._take("<I")
            self._take("<Q")  # offset into the data section
            infos.append((name, dims, kind))
        return metadata, infos

    def _take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        length = self._take("<Q")
        text = bytes(self.data[self.pos : self.pos + length]).decode("utf-8", "replace")
        self.pos += length
        return text

    def _value(self, kind: int, keep: bool = True) -> Any:
        if kind in _SCALARS:
            return self._take(_SCALARS[kind])
        if kind == _STRING:
            return self._string()
        if kind != _ARRAY:
            raise ValueError(f"unknown value type {kind} at byte {self.pos}")
        item, count = self._take("<I"), self._take("<Q")
        if item in _SCALARS:
            fmt = _SCALARS[item]
            values = struct.unpack_from(f"<{count}{fmt[1]}", self.data, self.pos)
            self.pos += count * struct.calcsize(fmt)
            return list(values) if keep else count
        if item == _STRING and not keep:
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.data, self.pos)[0]
            return count
        return [self._value(item, keep) for _ in range(count)]


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
