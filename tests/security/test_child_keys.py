"""Each child demands a random key that only corral knows, so a local user who finds a child's
port on 127.0.0.1 cannot bypass corral's own API keys (issue 12, #8)."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.support import CorralServer, demo_model, fake_cmd, post


def child_of(
    server: CorralServer, model: str, headers: dict[str, str] | None = None
) -> tuple[psutil.Process, int]:
    """The model's child process and the port it listens on."""
    running = httpx.get(f"{server.url}/running", headers=headers, timeout=5).json()["running"]
    (entry,) = [e for e in running if e["model"] == model]
    return psutil.Process(entry["pid"]), int(entry["port"])


def assert_key_hidden_and_demanded(child: psutil.Process, port: int) -> None:
    key = child.environ()["LLAMA_API_KEY"]  # llama-server's env for --api-key (common/arg.cpp)
    assert len(key) >= 32
    # Not on the command line, which every local user can read in /proc/<pid>/cmdline.
    assert not any(key in part for part in child.cmdline())
    direct = f"http://127.0.0.1:{port}"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{direct}/v1/chat/completions", json=body, timeout=30).status_code == 401
    assert httpx.get(f"{direct}/health", timeout=5).status_code == 200  # probes still work
    with_key = httpx.post(
        f"{direct}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert with_key.status_code == 200


def test_a_fake_child_refuses_requests_without_corrals_key(tmp_path: Path) -> None:
    config = {"api_keys": ["client-key"], "models": [{"name": "m", "cmd": fake_cmd("m")}]}
    client_key = {"Authorization": "Bearer client-key"}
    with CorralServer(config, tmp_path) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        through = post(server, "/v1/chat/completions", body, client_key)
        assert through.status_code == 200, through.text
        # The client's own key went to corral, corral's to the child: never the client's.
        assert httpx.get(
            f"{server.url}/upstream/m/v1/models", headers=client_key, timeout=10
        ).is_success
        child, port = child_of(server, "m", client_key)
        assert_key_hidden_and_demanded(child, port)


@pytest.mark.e2e
def test_llama_server_honours_the_key_from_its_environment(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "models": [demo_model()],
    }
    with CorralServer(config, tmp_path) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert answer.choices
        child, port = child_of(server, "gemma-3-270m")
        assert_key_hidden_and_demanded(child, port)
