"""corral in front of the real llama-server and Gemma 3 270M, driven by the real openai client."""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

import openai
import psutil
import pytest

from tests.support import CorralServer, demo_model, pids_gone, wait_until

pytestmark = pytest.mark.e2e


def serve(tmp_path: Path, models_dir: Path, llama_server: str, **config: object) -> CorralServer:
    settings = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "models": [demo_model()],
        **config,
    }
    return CorralServer(settings, tmp_path)


def client(server: CorralServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_completion_plain_and_streamed(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server) as server:
        assert server.children() == [], "a child ran before any request"
        api = client(server)
        answer = api.chat.completions.create(
            model="gemma-3-270m",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
        )
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        # The gemma template is applied: the prompt is more than the bare text's 3 tokens.
        assert answer.usage.prompt_tokens > 5

        chunks = list(
            api.chat.completions.create(
                model="gemma-3-270m",
                messages=[{"role": "user", "content": "Count to five."}],
                max_tokens=8,
                stream=True,
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 2, "the answer arrived in one piece, not streamed"
        assert text
        assert len(server.running()) == 1


def test_requests_right_after_a_stream_are_answered(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    """llama-server closes its kept-alive connection a moment after each streamed answer;
    a request corral sends in that moment must not become a 502."""
    with serve(tmp_path, models_dir, llama_server) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        statuses = []
        for stream in [True, False, True, True, False, False] * 3:
            body = {"model": "gemma-3-270m", "prompt": "Hi", "max_tokens": 2, "stream": stream}
            conn.request("POST", "/v1/completions", json.dumps(body))
            answer = conn.getresponse()
            answer.read()
            statuses.append(answer.status)
        conn.close()
        assert statuses == [200] * 18


def test_unknown_model_is_a_404_listing_the_names(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server) as server:
        with pytest.raises(openai.NotFoundError) as caught:
            client(server).chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        assert "gemma-3-270m" in str(caught.value)
        assert server.children() == []


def test_swap_between_two_entries_leaves_one_child(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    models = [demo_model("first"), demo_model("second", context_size=512)]
    with serve(tmp_path, models_dir, llama_server, models=models) as server:
        api = client(server)
        for name in ("first", "second", "first"):
            api.completions.create(model=name, prompt="The sky is", max_tokens=2)
            running = server.running()
            assert [r["model"] for r in running] == [name]
            llama = [p for p in server.children() if "llama-server" in p.name()]
            assert len(llama) == 1, f"after a request for {name}: {llama}"


def test_ttl_unloads_and_idle_means_no_child(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server, default_ttl=2) as server:
        client(server).completions.create(model="gemma-3-270m", prompt="Hi", max_tokens=2)
        assert server.children(), "no child while the model is loaded"
        wait_until(lambda: not server.children(), 30, "the TTL to unload the model")
        assert server.running() == []
        # The child is gone a moment before the pool logs why: wait for the line, not a race.
        wait_until(lambda: "reason=ttl" in server.log(), 10, "the TTL unload to be logged")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_corral_leaves_no_llama_server(
    tmp_path: Path, models_dir: Path, llama_server: str, sig: signal.Signals
) -> None:
    server = serve(tmp_path, models_dir, llama_server).start()
    try:
        client(server).completions.create(model="gemma-3-270m", prompt="Hi", max_tokens=2)
        pids = [p.pid for p in server.children()]
        assert pids, "the model should be loaded"
        server.signal(sig)
        wait_until(lambda: pids_gone(pids), 30, f"llama-server to exit after corral got {sig.name}")
        assert server.proc is not None
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    assert not any(psutil.pid_exists(p) for p in pids if _live(p))


def _live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_seeds_environment_alone_serves_the_models_folder(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    """The seed's systemd service: five variables, no config file, every GGUF in the folder."""
    server = CorralServer({}, tmp_path)
    server.env.update(
        {
            "LLAMA_CPP_BIN": llama_server,
            "MODELS_PATH": str(models_dir),
            "HOST": "127.0.0.1",
            "PORT": str(server.port),
            "MODEL_TTL": "3600",
        }
    )
    server.argv = ["serve"]
    with server:
        listed = client(server).models.list()
        assert "gemma-3-270m-q4_k_m" in [m.id for m in listed.data]
        answer = client(server).completions.create(
            model="gemma-3-270m-q4_k_m", prompt="The sky is", max_tokens=2
        )
        assert answer.choices[0].text is not None
        assert server.running()[0]["ttl"] == 3600
