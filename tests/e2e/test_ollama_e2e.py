"""The Ollama API and keep_alive, with the real ``ollama`` and ``openai`` clients in front
of corral, the real llama-server and Gemma 3 270M."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

import ollama
import openai
import pytest

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


def llama_children(server: CorralServer) -> list[int]:
    return [p.pid for p in server.children() if "llama-server" in p.name()]


def test_list_chat_streamed_generate_ps_and_embed(
    server: CorralServer, api: ollama.Client, models_dir: Path
) -> None:
    size = (models_dir / DEMO_FILE).stat().st_size
    (listed,) = api.list().models
    assert listed.model == NAME and listed.size == size
    assert listed.details is not None and listed.details.quantization_level == "Q4_K_M"

    chat = api.chat(NAME, messages=[{"role": "user", "content": "Say hello."}], options=SHORT)
    assert chat.done and chat.message.content
    assert chat.eval_count is not None and 0 < chat.eval_count <= 8
    assert chat.prompt_eval_count and chat.eval_duration and chat.total_duration
    assert chat.done_reason in ("stop", "length")

    parts = list(api.generate(NAME, "The sky is", stream=True, options=SHORT))
    assert len(parts) > 2, "the answer arrived in one piece, not streamed"
    assert "".join(p.response or "" for p in parts)
    assert parts[-1].done and parts[-1].eval_count

    (loaded,) = api.ps().models
    # As Ollama's: the memory the model takes (here corral's estimate), not its file's size.
    (running,) = server.running()
    assert loaded.model == NAME and loaded.size == running["memory"]["bytes"] > size
    assert loaded.context_length == 1024 and loaded.size_vram is not None
    assert loaded.expires_at is not None and loaded.expires_at.year > 2300, "default_ttl 0"

    embedded = api.embed(NAME, input=["hello", "world"])
    assert len(embedded.embeddings) == 2
    first, second = embedded.embeddings
    assert len(first) == len(second) > 100 and first != second
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-3)
    assert len(llama_children(server)) == 1


def test_generate_without_prompt_preloads_and_keep_alive_0_unloads(
    server: CorralServer, api: ollama.Client
) -> None:
    assert api.generate(NAME).done_reason == "load"
    assert llama_children(server), "a generate without a prompt loads the model"
    answer = api.generate(NAME, "Hi", options={"num_predict": 2}, keep_alive=0)
    assert answer.done and answer.response is not None
    wait_until(lambda: not llama_children(server), 30, "keep_alive 0 to stop llama-server")
    assert api.ps().models == []
    assert server.running() == []


def test_openai_keep_alive_0_unloads(server: CorralServer, oai: openai.OpenAI) -> None:
    oai.completions.create(model=NAME, prompt="Hi", max_tokens=2, extra_body={"keep_alive": 0})
    wait_until(lambda: not llama_children(server), 30, "keep_alive 0 to stop llama-server")
    assert server.running() == []


def test_openai_keep_alive_sets_the_expiry_that_ps_reports(
    server: CorralServer, oai: openai.OpenAI, api: ollama.Client
) -> None:
    oai.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2,
        extra_body={"keep_alive": "10s"},
    )
    (loaded,) = api.ps().models
    assert loaded.expires_at is not None
    left = loaded.expires_at.timestamp() - time.time()
    assert 6 < left <= 10.5, f"expires in {left:.1f} s, expected about 10"
    listed = {m.id: m.model_extra or {} for m in oai.models.list().data}
    openai_expiry = listed[NAME]["expires_at"]
    assert abs(openai_expiry - loaded.expires_at.timestamp()) < 2
    assert datetime.fromtimestamp(openai_expiry) > datetime.now()
    wait_until(lambda: not llama_children(server), 30, "the 10 s keep_alive to run out")
