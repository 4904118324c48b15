"""Load progress to chat clients (send_loading_state): the openai client streaming during a
cold start reads the progress as reasoning_content, then the answer; the ollama client reads
it as thinking. Off by default, and never for a model that is already loaded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.support import CorralServer, fake_cmd

CONFIG = {
    "models": [
        {
            "name": "shown",
            "cmd": fake_cmd("shown", "--load-seconds", "2.5", "--tokens", "3"),
            "send_loading_state": True,
        },
        {"name": "quiet", "cmd": fake_cmd("quiet", "--load-seconds", "1", "--tokens", "3")},
        {
            "name": "broken",
            "cmd": fake_cmd("broken", "--crash-during-load"),
            "send_loading_state": True,
        },
    ]
}
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("loading")) as running:
        yield running


def stream(server: CorralServer, model: str) -> list[tuple[str, str]]:
    """(reasoning, content) of each chunk the openai client reads."""
    parts = []
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none") as client:
        for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            reasoning = (delta.model_extra or {}).get("reasoning_content") or ""
            parts.append((reasoning, delta.content or ""))
    return parts


def test_a_cold_start_streams_progress_then_the_answer(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    parts = stream(server, "shown")
    reasoning = "".join(r for r, _ in parts)
    content = "".join(c for _, c in parts)
    assert reasoning.startswith("Loading model shown…")
    assert "… 1 s" in reasoning and "… 2 s" in reasoning  # one note per second of the load
    assert "Model shown ready in" in reasoning
    assert content.startswith("shown:")  # the fake child's answer, after the notes
    first_content = next(i for i, (_, c) in enumerate(parts) if c)
    assert all(not r for r, _ in parts[first_content:]), "a note after the answer began"


def test_a_loaded_model_gets_no_notes(server: CorralServer) -> None:
    stream(server, "shown")  # loaded now
    assert all(not r for r, _ in stream(server, "shown"))


def test_off_by_default(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    assert all(not r for r, _ in stream(server, "quiet"))


def test_a_failed_load_ends_the_stream_with_its_error(server: CorralServer) -> None:
    body = {"model": "broken", "messages": MESSAGES, "stream": True}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200  # the stream had begun with the first note
    events = [e for e in answer.text.split("\n\n") if e.startswith("data: ")]
    assert "Loading model broken" in events[0]
    assert '"error"' in events[-1] and "broken" in events[-1] and "failed to start" in events[-1]


def test_the_ollama_client_reads_progress_as_thinking(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    with ollama.Client(host=server.url) as client:
        parts = list(client.chat(model="shown", messages=MESSAGES, stream=True))
    thinking = "".join(p.message.thinking or "" for p in parts)
    content = "".join(p.message.content or "" for p in parts)
    assert thinking.startswith("Loading model shown…") and "ready in" in thinking
    assert content.startswith("shown:") and parts[-1].done
