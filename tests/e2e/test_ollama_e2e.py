"""The Ollama API and keep_alive, with the real ``ollama`` and ``openai`` clients in front
of corral, the real llama-server and Gemma 3 270M."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import ollama
import openai
import pytest

from tests.e2e.conftest import STORE_NAME, Store, corral_for
from tests.ollama_layout import tree_digest
from tests.support import DEMO_FILE, CorralServer, demo_model, wait_until

pytestmark = pytest.mark.e2e

NAME = "gemma-3-270m"
SHORT = {"num_predict": 8}  # the CPU is shared and slow: a few tokens prove the path


#: What this suite's corral serves (tests/e2e/conftest.py's ``server``). Gemma's GGUF pools
#: nothing by default, and llama-server's OpenAI embeddings need a pooled vector: mean
#: pooling makes the same model answer chat and embeddings.
SETTINGS = {
    "default_ttl": 0,
    "models": [demo_model(NAME, args=["--embeddings", "--pooling", "mean"])],
}


@dataclass(frozen=True)
class Served:
    server: CorralServer
    name: str
    size: int  # the model's size in /api/tags


@pytest.fixture(scope="module", params=["config", "store"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    llama_server: str,
    ollama_store: Store,
) -> Iterator[Served]:
    """The demo model as a config entry, then as a model of Ollama's store."""
    if request.param == "config":
        declared, name, size = SETTINGS, NAME, (models_dir / DEMO_FILE).stat().st_size
    else:
        # The store's model, with what the suite needs set on it through an `ollama:` path:
        # Gemma's template (its GGUF has none) and pooling. No models_path: the demo file in
        # it would be served a second time, under its own name.
        entry: dict[str, object] = {"name": STORE_NAME, "path": f"ollama:{STORE_NAME}"}
        entry.update(chat_template="gemma", args=["--embeddings", "--pooling", "mean"])
        declared = {**SETTINGS, "models_path": None, "models": [entry]}
        declared["ollama_models"] = str(ollama_store.root)
        name, size = STORE_NAME, ollama_store.size
    label = f"-{request.param}"
    with corral_for(
        request, tmp_path_factory, models_dir, llama_server, declared, label
    ) as running:
        yield Served(running, name, size)
    if request.param == "store":
        assert tree_digest(ollama_store.root) == ollama_store.before, "the store was changed"


@pytest.fixture(scope="module")
def server(served: Served) -> CorralServer:
    """Overrides conftest's: this suite runs once per setup of ``served``."""
    return served.server


@pytest.fixture(scope="module")
def name(served: Served) -> str:
    return served.name


def llama_children(server: CorralServer) -> list[int]:
    return [p.pid for p in server.children() if "llama-server" in p.name()]


def test_list_chat_streamed_generate_ps_and_embed(
    server: CorralServer, api: ollama.Client, served: Served
) -> None:
    name, size = served.name, served.size
    (listed,) = api.list().models
    assert listed.model == name and listed.size == size
    assert listed.details is not None and listed.details.quantization_level == "Q4_K_M"

    chat = api.chat(name, messages=[{"role": "user", "content": "Say hello."}], options=SHORT)
    assert chat.done and chat.message.content
    assert chat.eval_count is not None and 0 < chat.eval_count <= 8
    assert chat.prompt_eval_count and chat.eval_duration and chat.total_duration
    assert chat.done_reason in ("stop", "length")

    parts = list(api.generate(name, "The sky is", stream=True, options=SHORT))
    assert len(parts) > 2, "the answer arrived in one piece, not streamed"
    assert "".join(p.response or "" for p in parts)
    assert parts[-1].done and parts[-1].eval_count

    (loaded,) = api.ps().models
    # As Ollama's: the memory the model takes (here corral's estimate), not its file's size.
    (running,) = server.running()
    assert loaded.model == name and loaded.size == running["memory"]["bytes"] > size
    assert loaded.context_length == 1024 and loaded.size_vram is not None
    assert loaded.expires_at is not None and loaded.expires_at.year > 2300, "default_ttl 0"

    embedded = api.embed(name, input=["hello", "world"])
    assert len(embedded.embeddings) == 2
    first, second = embedded.embeddings
    assert len(first) == len(second) > 100 and first != second
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-3)
    assert len(llama_children(server)) == 1


def test_generate_without_prompt_preloads_and_keep_alive_0_unloads(
    server: CorralServer, api: ollama.Client, name: str
) -> None:
    assert api.generate(name).done_reason == "load"
    assert llama_children(server), "a generate without a prompt loads the model"
    answer = api.generate(name, "Hi", options={"num_predict": 2}, keep_alive=0)
    assert answer.done and answer.response is not None
    wait_until(lambda: not llama_children(server), 30, "keep_alive 0 to stop llama-server")
    assert api.ps().models == []
    assert server.running() == []


def test_openai_keep_alive_0_unloads(server: CorralServer, oai: openai.OpenAI, name: str) -> None:
    oai.completions.create(model=name, prompt="Hi", max_tokens=2, extra_body={"keep_alive": 0})
    wait_until(lambda: not llama_children(server), 30, "keep_alive 0 to stop llama-server")
    assert server.running() == []


def test_openai_keep_alive_sets_the_expiry_that_ps_reports(
    server: CorralServer, oai: openai.OpenAI, api: ollama.Client, name: str
) -> None:
    oai.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2,
        extra_body={"keep_alive": "10s"},
    )
    (loaded,) = api.ps().models
    assert loaded.expires_at is not None
    left = loaded.expires_at.timestamp() - time.time()
    assert 6 < left <= 10.5, f"expires in {left:.1f} s, expected about 10"
    listed = {m.id: m.model_extra or {} for m in oai.models.list().data}
    openai_expiry = listed[name]["expires_at"]
    assert abs(openai_expiry - loaded.expires_at.timestamp()) < 2
    assert datetime.fromtimestamp(openai_expiry) > datetime.now()
    wait_until(lambda: not llama_children(server), 30, "the 10 s keep_alive to run out")
