"""One corral around the demo model for the suites that talk to it as clients would
(observe, clients, ollama), and the client fixtures they share.

A test module says what its corral serves with module-level ``SETTINGS``, merged over the
demo's folder and the real llama-server; each module gets its own corral (module scope),
so one suite's loads and unloads never reach another's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.support import CorralServer


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    llama_server: str,
) -> Iterator[CorralServer]:
    declared: dict[str, Any] | None = getattr(request.module, "SETTINGS", None)
    if declared is None:
        raise pytest.UsageError(f"{request.module.__name__} uses `server` but declares no SETTINGS")
    settings = {"models_path": str(models_dir), "llama_server": llama_server, **declared}
    name = request.module.__name__.rsplit(".", 1)[-1]
    with CorralServer(settings, tmp_path_factory.mktemp(name)) as running:
        yield running


@pytest.fixture
def oai(server: CorralServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.fixture
def api(server: CorralServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=120) as client:
        yield client
