"""What a GGUF file's header holds: its key/value metadata and its tensor table, read once
per file version. corral's one GGUF header reader.

Owns reading a GGUF header and the per-file cache, keyed by path, modification time and
size, so that no request reads a 20 GB file twice and a replaced file is read again. It
does not decide what the metadata means: to a client (``api.ollama.models``,
``chat_templates``) or to memory (``gguf_facts``, a view over this module's ``GGUFInfo``).

The ``gguf`` package (llama.cpp's own Python reader) is not used to read: its
``GGUFReader`` builds a numpy view of every vocabulary string, which took 38 s for Gemma 3's
262,144 tokens on this machine, and importing it at all brings numpy, 17 MB that an idle
corral kept after its first swap (83 MB against 67). This walk skips arrays by their lengths
and touches only the header's pages of a memory map: tensors are never read. The format's
value types and magic are copied here (a test keeps them equal to the package's); the
quantization names and block sizes come from the package's ``constants.py``, loaded on its
own (``gguf_constants``): it imports nothing but the standard library.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
import mmap
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


@functools.cache
def gguf_constants() -> ModuleType:
    """gguf-py's ``constants.py`` (quantization types, their block sizes, file types),
    without the package: importing ``gguf`` runs its ``__init__``, which imports numpy."""
    loaded = sys.modules.get("gguf.constants")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("gguf")
    if package is None or package.origin is None:
        raise ImportError("the gguf package is not installed (a dependency of corral)")
    path = Path(package.origin).with_name("constants.py")
    spec = importlib.util.spec_from_file_location("corral_gguf_constants", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: "GGUF" read as a little-endian uint32.
GGUF_MAGIC = 0x46554747


class GGUFValueType(enum.IntEnum):
    """The metadata value types of the GGUF format, as gguf-py's ``GGUFValueType``."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


#: struct formats of the fixed-size value types (little-endian, as llama.cpp writes them).
_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class GGUFError(ValueError):
    """A file that is not a GGUF this reader understands; the message names the file."""


@dataclass(frozen=True)
class Tensor:
    """One entry of the tensor table: its name, shape and ``GGMLQuantizationType`` value."""

    name: str
    shape: tuple[int, ...]
    kind: int


@dataclass(frozen=True)
class GGUFInfo:
    """A GGUF header. Arrays map to None in ``metadata`` and their lengths are in
    ``array_lengths``; the small ones (per-layer shapes, tags: every array outside
    ``tokenizer.*``) are kept, decoded, in ``arrays``. The vocabulary is only counted."""

    metadata: dict[str, Any]
    parameter_count: int
    array_lengths: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, list[Any]] = field(default_factory=dict)
    tensors: tuple[Tensor, ...] = ()

    @property
    def architecture(self) -> str:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else ""

    def arch_value(self, key: str) -> Any:
        """``<architecture>.<key>``, such as ``context_length``; None when absent."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def file_type(self) -> str:
        """The quantization as llama.cpp names it (``Q4_K_M``); "" when unknown."""
        value = self.metadata.get("general.file_type")
        try:
            name = gguf_constants().LlamaFileType(value).name if isinstance(value, int) else ""
        except ValueError:
            return ""
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None


_cache: dict[str, tuple[tuple[int, int], GGUFInfo]] = {}


def read(path: str | os.PathLike[str]) -> GGUFInfo:
    """The header of the GGUF at ``path``, from the cache unless the file changed.

    Raises OSError when the file cannot be read and GGUFError when it is not a GGUF.
    """
    key = str(path)
    stat = os.stat(key)
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    info = _read_header(Path(key))
    _cache[key] = (version, info)  # one entry per path: a replaced file drops the old one
    return info


def _read_header(path: Path) -> GGUFInfo:
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size < 24:
            raise GGUFError(f"{path}: not a readable GGUF file (shorter than its 24-byte header)")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
            try:
                return _Walk(view, path).header()
            except (struct.error, IndexError, UnicodeDecodeError) as exc:
                raise GGUFError(f"{path}: truncated or corrupt GGUF header ({exc})") from exc


class _Walk:
    """A cursor over the header; each ``_value`` call moves past what it read."""

    def __init__(self, view: mmap.mmap, path: Path) -> None:
        self.view, self.path, self.at = view, path, 0

    def header(self) -> GGUFInfo:
        magic, version = self._unpack("<II")
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{self.path}: not a readable GGUF file (magic {magic:#010x})")
        if version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {version}; this reader knows 2 and 3")
        tensor_count, kv_count = self._unpack("<QQ")
        metadata: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        arrays: dict[str, list[Any]] = {}
        for _ in range(kv_count):
            key = self._string()
            kind = GGUFValueType(self._unpack("<I")[0])
            if kind is GGUFValueType.ARRAY:
                metadata[key] = None
                if key.startswith("tokenizer."):  # the vocabulary: big, and only counted
                    lengths[key] = self._skip_array()
                else:
                    arrays[key] = self._array()
                    lengths[key] = len(arrays[key])
            else:
                metadata[key] = self._value(kind)
        tensors = []
        parameters = 0
        for _ in range(tensor_count):
            name = self._string()
            (dims,) = self._unpack("<I")
            shape = self._unpack(f"<{dims}Q")
            kind, _offset = self._unpack("<IQ")
            tensors.append(Tensor(name, shape, kind))
            count = 1
            for extent in shape:
                count *= extent
            parameters += count
        return GGUFInfo(metadata, parameters, lengths, arrays, tuple(tensors))

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.view, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def _string(self) -> str:
        (length,) = self._unpack("<Q")
        text = self.view[self.at : self.at + length].decode("utf-8")
        self.at += length
        return text

    def _value(self, kind: GGUFValueType) -> Any:
        if kind is GGUFValueType.STRING:
            return self._string()
        return self._unpack(_SCALARS[kind])[0]

    def _array(self) -> list[Any]:
        kind_raw, count = self._unpack("<IQ")
        kind = GGUFValueType(kind_raw)
        if kind in _SCALARS:
            return list(self._unpack(f"<{count}{_SCALARS[kind][1]}"))
        if kind is GGUFValueType.ARRAY:
            return [self._array() for _ in range(count)]
        return [self._value(kind) for _ in range(count)]

    def _skip_array(self) -> int:
        kind_raw, count = self._unpack("<IQ")
        kind = GGUFValueType(kind_raw)
        if kind in _SCALARS:
            self.at += count * struct.calcsize(_SCALARS[kind])
        elif kind is GGUFValueType.STRING:
            unpack, view, at = struct.unpack_from, self.view, self.at
            for _ in range(count):  # the hot loop for a vocabulary: no method calls
                at += 8 + unpack("<Q", view, at)[0]
            self.at = at
        else:  # arrays of arrays: walk each one
            for _ in range(count):
                self._skip_array()
        if self.at > len(self.view):
            raise GGUFError(f"{self.path}: truncated GGUF header (an array runs past the end)")
        return int(count)
