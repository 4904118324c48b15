"""The library end to end: the demo GGUF pulled by short name from a fake Ollama registry,
then served by the real llama-server and answered through the openai client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from corral.generator.cli import cli
from corral.supervisor.cli import main as _registers_commands  # noqa: F401  (pull, lock, search)
from tests.supervisor.fake_registries import ollama_model
from tests.supervisor.file_server import FileServer
from tests.support import CorralServer, demo_model_file

pytestmark = pytest.mark.e2e

#: sha256 of the demo file (see /work/shared/DESIGN.md); the registry's digest must match it.
DEMO_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture(scope="module")
def registry() -> Iterator[FileServer]:
    body = demo_model_file().read_bytes()
    with FileServer() as server:
        ollama_model(server, "library/gemma3", "270m", body, params={"temperature": 0})
        yield server


def test_pull_by_short_name_then_serve_and_chat(
    registry: FileServer, llama_server: str, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    pulled = CliRunner().invoke(
        cli, ["pull", "gemma3:270m", "--dest", str(folder), "--registry", registry.url("")]
    )
    assert pulled.exit_code == 0, pulled.output
    saved = folder / "gemma3-270m.gguf"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == DEMO_SHA256
    # The base model's GGUF has no template: the pull says so and names the fix.
    assert "Set the model's chat_template" in pulled.stderr
    config = {
        "llama_server": llama_server,
        "models_path": str(folder),
        "models": [
            {
                "name": "gemma3:270m",
                "source": "ollama:gemma3:270m",
                "chat_template": "gemma",
                "context_size": 1024,
            }
        ],
    }
    with CorralServer(config, tmp_path) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
        answer = client.chat.completions.create(
            model="gemma3:270m",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
        )
        assert answer.choices[0].message.content
        assert [m.id for m in client.models.list()] == ["gemma3:270m"]
