"""Reading a GGUF header (one reader, one cache): metadata, parameter count, the per-file
cache, the memory facts as a view over it, broken files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral.supervisor.runtime.memory import gguf_facts, gguf_info
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
    with pytest.raises(gguf_info.GGUFError, match=r"notes\.gguf: not a readable GGUF file \(magic"):
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


def test_memory_facts_are_a_view_over_the_one_cached_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_gguf(tmp_path / "shared.gguf", arch="qwen2")
    reads: list[Path] = []
    real = gguf_info._read_header

    def counted(at: Path) -> gguf_info.GGUFInfo:
        reads.append(at)
        return real(at)

    monkeypatch.setattr(gguf_info, "_read_header", counted)
    facts = gguf_facts.read(path)
    info = gguf_info.read(path)  # /api/show's and the templates' read: the same entry
    assert gguf_facts.read(path) == facts
    assert reads == [path]
    assert facts.architecture == info.architecture == "qwen2"
    assert facts.vocab_size == info.array_lengths["tokenizer.ggml.tokens"] == 1000
    assert [name for name, _ in facts.tensors] == [t.name for t in info.tensors]


def test_memory_facts_of_a_missing_file_are_a_gguf_error(tmp_path: Path) -> None:
    # fit.py catches GGUFError only: a missing file must not escape as an OSError there.
    with pytest.raises(gguf_facts.GGUFError, match=r"absent\.gguf: not a readable GGUF file"):
        gguf_facts.read(tmp_path / "absent.gguf")
    assert gguf_facts.GGUFError is gguf_info.GGUFError


def test_the_format_constants_are_the_gguf_packages() -> None:
    """Copied so that reading a header does not import numpy: they must not drift."""
    import gguf

    assert gguf_info.GGUF_MAGIC == gguf.GGUF_MAGIC
    ours = {t.name: t.value for t in gguf_info.GGUFValueType}
    assert ours == {t.name: t.value for t in gguf.GGUFValueType}


def test_reading_a_header_and_its_sizes_imports_no_numpy(tmp_path: Path) -> None:
    """A swap reads the models' headers: with gguf's __init__ came numpy, 17 MB an idle
    corral then kept for good (83 MB against 67)."""
    path = write_gguf(tmp_path / "m.gguf")
    code = (
        "import sys\n"
        "from corral.supervisor.runtime.memory import gguf_facts, gguf_info\n"
        f"facts = gguf_facts.read(__import__('pathlib').Path({str(path)!r}))\n"
        f"info = gguf_info.read(__import__('pathlib').Path({str(path)!r}))\n"
        "assert facts.tensors and info.file_type == 'Q4_K_M', (facts, info.file_type)\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
