"""Observability with the real llama-server and Gemma 3 270M: the openai client streaming
during a cold start reads the load's progress (send_loading_state), then the model's answer;
/metrics counts llama-server's own timings; the event stream sees the load and the unload;
``corral logs`` prints llama-server's log."""

from __future__ import annotations

import subprocess

import httpx
import openai
import pytest

from tests.observe.helpers import Follower, metrics, sample
from tests.support import CorralServer, corral_bin, demo_model, wait_until

pytestmark = pytest.mark.e2e

NAME = "gemma-3-270m"


#: What this suite's corral serves (tests/e2e/conftest.py's ``server``).
SETTINGS = {"models": [demo_model(NAME, send_loading_state=True)]}


def test_a_cold_start_streams_progress_then_the_real_answer(server: CorralServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none")
    with client, Follower(server.url) as follower:
        reasoning, content = "", ""
        for chunk in client.chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            stream=True,
        ):
            if chunk.choices:
                delta = chunk.choices[0].delta
                reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
                content += delta.content or ""
        httpx.post(f"{server.url}/unload/{NAME}", timeout=30).raise_for_status()
        wait_until(lambda: "unloaded" in follower.kinds(NAME), 10, "the unload event")
    assert reasoning.startswith(f"Loading model {NAME}…") and "ready in" in reasoning
    assert content.strip(), "no answer after the progress notes"
    assert follower.kinds(NAME)[:3] == ["loading", "ready", "unloaded"]


def test_metrics_count_llama_servers_timings(server: CorralServer) -> None:
    before = metrics(server.url)
    out_before = sample(before, "corral_predicted_tokens_total", model=NAME) or 0
    body = {"model": NAME, "prompt": "The sky is", "max_tokens": 5, "temperature": 0}
    answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120).json()
    after = metrics(server.url)
    generated = answer["usage"]["completion_tokens"]
    assert sample(after, "corral_predicted_tokens_total", model=NAME) == out_before + generated
    assert (sample(after, "corral_tokens_per_second", model=NAME) or 0) > 0
    route = "/v1/completions"
    assert sample(after, "corral_requests_total", model=NAME, route=route, status="200") == 1


def test_corral_logs_prints_llama_servers_log(server: CorralServer) -> None:
    done = subprocess.run(
        [corral_bin(), "logs", NAME, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "listening on" in done.stdout  # llama-server's own line
