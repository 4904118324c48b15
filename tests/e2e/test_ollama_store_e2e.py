"""Ollama's store served in place: a real corral and llama-server answer the ``ollama``
client from a store in Ollama's own layout, with the store's digest, size, parameters and
system prompt, and leave every file of it as it was."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.e2e.conftest import STORE_NAME, STORE_SYSTEM, Store
from tests.ollama_layout import tree_digest
from tests.support import CorralServer, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ollama_store: Store, llama_server: str
) -> Iterator[CorralServer]:
    # Overrides conftest's `server` (whose `api` client this suite uses): no entry, no
    # models_path; the model, its defaults and its name come from the store alone.
    settings = {"llama_server": llama_server, "default_ttl": 0}
    env = {"OLLAMA_MODELS": str(ollama_store.root)}
    with CorralServer(settings, tmp_path_factory.mktemp("store-e2e"), env) as running:
        yield running


def test_the_store_params_cap_the_answer_and_ps_reports_the_digest(
    server: CorralServer, api: ollama.Client, ollama_store: Store
) -> None:
    chat = api.chat(STORE_NAME, messages=[{"role": "user", "content": "Tell me a long story."}])
    # params' num_predict 3, sent to llama-server as max_tokens: the client set no limit.
    assert chat.done and chat.eval_count is not None and 0 < chat.eval_count <= 3
    (loaded,) = api.ps().models
    assert loaded.model == STORE_NAME
    assert loaded.digest == hashlib.sha256(ollama_store.manifest).hexdigest()
    assert loaded.context_length == 1024  # params' num_ctx


def test_tags_and_show_report_the_store(
    server: CorralServer, api: ollama.Client, ollama_store: Store
) -> None:
    (listed,) = api.list().models
    assert listed.model == STORE_NAME
    assert listed.digest == hashlib.sha256(ollama_store.manifest).hexdigest()
    layers = sum(p.stat().st_size for p in (ollama_store.root / "blobs").iterdir())
    assert listed.size == layers  # every layer and the config, as Ollama counts it
    assert listed.details is not None and listed.details.quantization_level == "Q4_K_M"
    shown = httpx.post(f"{server.url}/api/show", json={"model": STORE_NAME}, timeout=30).json()
    assert shown["system"] == STORE_SYSTEM
    assert "num_predict" in shown["parameters"] and "<end_of_turn>" in shown["parameters"]


def test_the_missing_chat_template_is_warned_about(server: CorralServer) -> None:
    # The demo GGUF carries no tokenizer.chat_template, and Ollama's Go template is not run.
    wait_until(lambda: "chat_template" in server.log(), 10, "the template warning")
    assert f"{STORE_NAME}: " in server.log() and "falls back to ChatML" in server.log()


def test_pull_delete_and_copy_leave_the_store_alone(server: CorralServer) -> None:
    pulled = httpx.post(f"{server.url}/api/pull", json={"model": STORE_NAME, "stream": False})
    assert pulled.status_code == 200 and pulled.json() == {"status": "success"}
    deleted = httpx.request("DELETE", f"{server.url}/api/delete", json={"model": STORE_NAME})
    assert deleted.status_code == 400 and "ollama rm" in deleted.json()["error"]
    copied = httpx.post(
        f"{server.url}/api/copy", json={"source": STORE_NAME, "destination": "mine:1"}
    )
    assert copied.status_code == 400


def test_every_file_of_the_store_is_unchanged(server: CorralServer, ollama_store: Store) -> None:
    assert tree_digest(ollama_store.root) == ollama_store.before
