"""A model's `source`: the forms it may take, read as Ollama and llama.cpp read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.generator import model_source as ms


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        # types/model/name.go: namespace `library` and tag `latest` fill what is missing.
        ("qwen2.5-coder:7b", ms.OllamaName(None, "library", "qwen2.5-coder", "7b")),
        ("ollama:gemma3", ms.OllamaName(None, "library", "gemma3", "latest")),
        ("ollama:someone/tiny:q4", ms.OllamaName(None, "someone", "tiny", "q4")),
        ("example.com:5000/ns/m:t", ms.OllamaName("example.com:5000", "ns", "m", "t")),
        ("hf:owner/Repo-GGUF:Q4_K_M", ms.HubQuant("owner/Repo-GGUF", "Q4_K_M", None)),
        ("hf:owner/repo@v2", ms.HubQuant("owner/repo", None, "v2")),
        ("hf:owner/repo/sub/m.gguf", ms.HubFile("owner/repo", "sub/m.gguf", None)),
        ("https://example.org/m.gguf", ms.Url("https://example.org/m.gguf")),
    ],
)
def test_forms(text: str, parsed: ms.ModelSource) -> None:
    assert ms.parse(text) == parsed


@pytest.mark.parametrize("text", ["hf:x", "m.gguf", "a/b/c/d:e", "ns.dot/m:t:u", "ftp://x/m.gguf"])
def test_what_is_not_a_source(text: str) -> None:
    with pytest.raises(ms.SourceSyntaxError):
        ms.parse(text)


def test_local_names_are_known_before_the_download(tmp_path: Path) -> None:
    assert ms.stem(ms.parse("qwen2.5-coder:7b")) == "qwen2.5-coder-7b"
    assert ms.stem(ms.parse("ollama:someone/tiny:q4")) == "someone-tiny-q4"
    source = ms.parse("hf:owner/Repo-GGUF:Q6_K")
    assert ms.local_path(tmp_path, source) == tmp_path / "Repo-GGUF-Q6_K.gguf"
    first = tmp_path / ms.split_name("Repo-GGUF-Q6_K", 1, 3)
    first.write_bytes(b"")
    assert ms.local_path(tmp_path, source) == first
