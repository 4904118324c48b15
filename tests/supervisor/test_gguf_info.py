"""Reading a GGUF header: metadata, parameter count, the per-file cache, broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.supervisor.runtime import gguf_info
from tests.gguf_files import write_gguf


def test_metadata_parameters_and_quantization(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", arch="qwen2", chat_template="{{ tools }}")
    info = gguf_info.read(path)
    assert info.architecture == "qwen2"
    assert info.arch_value("context_length") == 8192
    assert info.metadata["general.name"] == "Tiny Test"
    assert info.file_type == "Q4_K_M"
    assert info.chat_template == "{{ tools }}"
    assert info.parameter_count == 6 + 24
    # Arrays are skipped, not kept: their keys are there, their lengths known.
    assert info.metadata["tokenizer.ggml.tokens"] is None
    assert info.array_lengths["tokenizer.ggml.tokens"] == 1000
    assert info.array_lengths["general.tags"] == 2


def test_read_once_per_file_version(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", context_length=4096)
    first = gguf_info.read(path)
    assert gguf_info.read(path) is first  # cached: the file was not read again
    write_gguf(path, context_length=2048)  # replaced: another size or mtime
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = gguf_info.read(path)
    assert again is not first
    assert again.arch_value("context_length") == 2048


def test_not_a_gguf_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"this is not a model, just some text of some length")
    with pytest.raises(gguf_info.GGUFError, match=r"notes\.gguf: not a GGUF file \(magic"):
        gguf_info.read(path)


def test_truncated_header_names_the_file(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:200])  # inside the vocabulary
    with pytest.raises(gguf_info.GGUFError, match=r"cut\.gguf: truncated"):
        gguf_info.read(cut)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        gguf_info.read(tmp_path / "absent.gguf")
