"""Hugging Face's hub cache and llama.cpp's older cache, read in place: each layout as its
writer leaves it (huggingface_hub / llama.cpp's common/hf-cache.cpp), and the hf: names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corral.generator import hf_cache, loader
from corral.generator.problems import ConfigError
from tests.ollama_layout import tree_digest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_repo(root: Path, repo: str, files: list[str], ref: str = "main") -> None:
    """``models--owner--repo`` with its blobs, ``refs/<ref>`` and a snapshot of links."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / ref).write_text(COMMIT, encoding="utf-8")
    for index, name in enumerate(files):
        blob = folder / "blobs" / f"{index:064x}"
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(b"GGUF" + name.encode())
        link = folder / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    hub_repo(
        root,
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        ["Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Llama-3.2-1B-Instruct-IQ3_XS.gguf", "README.md"],
    )
    hub_repo(
        root,
        "ggml-org/gemma-3-4b-it-GGUF",
        [
            "gemma-3-4b-it-Q8_0-00001-of-00002.gguf",
            "gemma-3-4b-it-Q8_0-00002-of-00002.gguf",
            "mmproj-model-f16.gguf",
        ],
    )
    hub_repo(root, "someone/plain", ["sub/weights.gguf"], ref="dev")
    return root


def test_the_hub_layout_as_hf_names(cache: Path) -> None:
    found = hf_cache.read(cache)
    assert sorted(found) == [
        "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:IQ3_XS",
        "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "hf:ggml-org/gemma-3-4b-it-GGUF:Q8_0",
        "hf:someone/plain/sub/weights.gguf",
    ]
    gemma = found["hf:ggml-org/gemma-3-4b-it-GGUF:Q8_0"]
    assert gemma["path"].endswith(f"snapshots/{COMMIT}/gemma-3-4b-it-Q8_0-00001-of-00002.gguf")
    assert gemma["args"][0] == "--mmproj" and gemma["args"][1].endswith("mmproj-model-f16.gguf")


def test_llamas_older_flat_cache(tmp_path: Path) -> None:
    manifest = {
        "ggufFile": {"rfilename": "Qwen3-0.6B-Q8_0.gguf", "lfs": {"sha256": "ab" * 32}},
        "mmprojFile": {"rfilename": "sub/mmproj-F16.gguf"},
    }
    (tmp_path / "manifest=Qwen=Qwen3-0.6B-GGUF=Q8_0.json").write_text(json.dumps(manifest))
    (tmp_path / "Qwen_Qwen3-0.6B-GGUF_Qwen3-0.6B-Q8_0.gguf").write_bytes(b"GGUF")
    (tmp_path / "Qwen_Qwen3-0.6B-GGUF_sub_mmproj-F16.gguf").write_bytes(b"GGUF")
    found = hf_cache.read(tmp_path)
    assert list(found) == ["hf:Qwen/Qwen3-0.6B-GGUF:Q8_0"]
    entry = found["hf:Qwen/Qwen3-0.6B-GGUF:Q8_0"]
    assert entry["path"] == str(tmp_path / "Qwen_Qwen3-0.6B-GGUF_Qwen3-0.6B-Q8_0.gguf")
    assert entry["args"] == ["--mmproj", str(tmp_path / "Qwen_Qwen3-0.6B-GGUF_sub_mmproj-F16.gguf")]


def test_served_after_the_configs_own_names_and_left_unchanged(tmp_path: Path, cache: Path) -> None:
    before = tree_digest(cache)
    own = "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"hf_cache: {cache}\nmodels:\n- name: {own}\n  path: /m/mine.gguf\n", encoding="utf-8"
    )
    config = loader.load(path, environ={})
    assert config.model(own).path == Path("/m/mine.gguf")  # type: ignore[union-attr]
    assert config.model("hf:ggml-org/gemma-3-4b-it-GGUF:Q8_0") is not None
    assert len(config.models) == 4
    assert tree_digest(cache) == before


def test_models_path_inside_the_cache_is_refused(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"hf_cache: {cache}\nmodels_path: {cache}/mine\n", encoding="utf-8")
    with pytest.raises(ConfigError) as failure:
        loader.load(path, environ={})
    assert "models_path: " in str(failure.value) and "is inside hf_cache" in str(failure.value)
