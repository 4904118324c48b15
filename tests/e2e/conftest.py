"""One corral around the demo model for the suites that talk to it as clients would
(observe, clients, ollama), the client fixtures they share, and Ollama's store holding the
demo model.

A test module says what its corral serves with module-level ``SETTINGS``, merged over the
demo's folder and the real llama-server; each module gets its own corral (module scope),
so one suite's loads and unloads never reach another's. A module that serves more than one
setup builds its corrals with ``corral_for`` (a null setting is unset, as in config.yaml).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.ollama_layout import add_model, tree_digest
from tests.support import DEMO_FILE, DEMO_SHA256, CorralServer

#: The name Ollama's store lists the demo model by, and the defaults its layers carry.
STORE_NAME = "gemma3:270m"
STORE_PARAMS = {"num_predict": 3, "stop": ["<end_of_turn>"], "num_ctx": 1024}
STORE_SYSTEM = "You are a helpful assistant."
GO_TEMPLATE = "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}"


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
    with corral_for(request, tmp_path_factory, models_dir, llama_server, declared) as running:
        yield running


@contextmanager
def corral_for(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    llama_server: str,
    declared: Mapping[str, Any],
    label: str = "",
) -> Iterator[CorralServer]:
    """A corral serving ``declared`` over the demo's folder and the real llama-server."""
    settings = {"models_path": str(models_dir), "llama_server": llama_server, **declared}
    name = request.module.__name__.rsplit(".", 1)[-1] + label
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


@dataclass(frozen=True)
class Store:
    root: Path
    manifest: bytes
    before: dict[str, str]  # every file's sha256, as built

    @property
    def size(self) -> int:
        """The model's size as Ollama lists it: every layer and the config."""
        return sum(p.stat().st_size for p in (self.root / "blobs").iterdir())


@pytest.fixture(scope="session")
def ollama_store(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Store:
    """Ollama's store (``OLLAMA_MODELS``) with the demo model hard-linked in as a blob."""
    root = tmp_path_factory.mktemp("ollama") / "models"
    manifest = add_model(
        root,
        STORE_NAME,
        models_dir / DEMO_FILE,
        model_sha256=DEMO_SHA256,
        params=STORE_PARAMS,
        system=STORE_SYSTEM,
        template=GO_TEMPLATE,
    )
    return Store(root, manifest, tree_digest(root))
