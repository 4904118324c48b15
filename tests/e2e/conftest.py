"""The e2e suites' shared fixtures: Ollama's store holding the demo model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ollama_layout import add_model, tree_digest
from tests.support import DEMO_FILE, DEMO_SHA256

#: The name the store lists the demo model by, and the defaults its layers carry.
STORE_NAME = "gemma3:270m"
STORE_PARAMS = {"num_predict": 3, "stop": ["<end_of_turn>"], "num_ctx": 1024}
STORE_SYSTEM = "You are a helpful assistant."
GO_TEMPLATE = "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}"


@dataclass(frozen=True)
class Store:
    root: Path
    manifest: bytes
    before: dict[str, str]  # every file's sha256, as built


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
