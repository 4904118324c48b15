"""The Ollama API and keep_alive on both APIs, against a real corral with fake upstreams."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.gguf_files import write_gguf
from tests.support import CorralServer, fake_cmd, post, wait_until

SLOW = ("--tokens", "60", "--token-delay", "0.05")


def model(name: str, *flags: str, **extra: object) -> dict[str, object]:
    return {"name": name, "cmd": fake_cmd(name.replace(":", "-"), *flags), **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    tmp = tmp_path_factory.mktemp("ollama")
    gguf = tmp / "chat-3b-q4_k_m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1020))
    config = {
        "default_ttl": 0,
        "models": [
            model("chat:latest", path=str(gguf), aliases=["chat"], parameters={"top_k": 5}),
            model("keep"),
            model("slow", *SLOW),
            model("crashy", "--tokens", "10", "--crash-after-chunks", "2"),
            model("hidden", unlisted=True),
        ],
    }
    with CorralServer(config, tmp) as running:
        yield running


def lines(answer: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in answer.text.splitlines()]


@pytest.fixture
def api(server: CorralServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=30) as client:
        yield client


def running(server: CorralServer) -> list[str]:
    return [m["model"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]]


def expiry(server: CorralServer, name: str) -> float:
    (entry,) = [m for m in httpx.get(f"{server.url}/api/ps").json()["models"] if m["name"] == name]
    return datetime.fromisoformat(entry["expires_at"]).timestamp()


def test_root_version_and_head(server: CorralServer) -> None:
    root = httpx.get(server.url)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["content-type"].startswith("text/plain")
    assert httpx.head(server.url).status_code == 200
    assert httpx.get(f"{server.url}/api/version").json() == {"version": "0.12.0"}


def test_tags_and_show_through_the_ollama_client(server: CorralServer, api: ollama.Client) -> None:
    listed = api.list().models
    assert [m.model for m in listed] == ["chat:latest", "keep", "slow", "crashy"]
    chat = listed[0]
    assert chat.size == 1024 and chat.details is not None
    assert chat.details.format == "gguf" and chat.details.quantization_level == "Q4_K_M"
    shown = api.show("chat")
    assert shown.parameters == f"{'num_ctx':<30} 4096\n{'top_k':<30} 5"
    assert shown.modelfile is not None and "chat-3b-q4_k_m.gguf" in shown.modelfile


def test_chat_not_streamed_has_the_ollama_shape(server: CorralServer) -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "options": {"num_predict": 8, "num_ctx": 4096},
    }
    answer = post(server, "/api/chat", body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["model"] == "chat"
    assert got["message"] == {"role": "assistant", "content": "chat-latest: t1 t2 t3 t4"}
    assert got["done"] is True and got["done_reason"] == "stop"
    assert got["eval_count"] == 5 and got["prompt_eval_count"] == 3
    assert got["total_duration"] >= got["load_duration"] > 0


def test_chat_streams_ndjson_by_default(server: CorralServer) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    answer = post(server, "/api/chat", body)
    assert answer.headers["content-type"] == "application/x-ndjson"
    objects = lines(answer)
    assert len(objects) == 6, objects
    assert "".join(o["message"]["content"] for o in objects) == "chat-latest: t1 t2 t3 t4"
    assert [o["done"] for o in objects] == [False] * 5 + [True]
    assert objects[-1]["done_reason"] == "stop" and "total_duration" in objects[-1]


def test_generate_streamed_and_raw_through_the_ollama_client(
    server: CorralServer, api: ollama.Client
) -> None:
    parts = list(api.generate("chat", "The sky is", stream=True, options={"seed": 1}))
    assert "".join(p.response or "" for p in parts) == "chat-latest: t1 t2 t3 t4"
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    raw = api.generate("chat", "The sky is", raw=True)
    assert raw.response == "chat-latest: t1 t2 t3 t4" and raw.done_reason == "stop"
    child_log = httpx.get(f"{server.url}/logs/chat").text
    assert child_log.splitlines()[-2] == "request POST /v1/completions stream=False"


def test_embed_and_legacy_embeddings(server: CorralServer, api: ollama.Client) -> None:
    embedded = api.embed("chat", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 8
    cut = post(server, "/api/embed", {"model": "chat", "input": "a", "dimensions": 4}).json()
    (vector,) = cut["embeddings"]
    assert len(vector) == 4 and math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-6)
    legacy = api.embeddings("chat", prompt="a")
    assert len(legacy.embedding) == 8


def test_unknown_model_is_ollamas_404(server: CorralServer, api: ollama.Client) -> None:
    answer = post(server, "/api/chat", {"model": "nope", "messages": []})
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("model 'nope' not found")
    assert "hidden" not in answer.text
    with pytest.raises(ollama.ResponseError) as caught:
        api.generate("nope", "hi")
    assert caught.value.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/generate", {"prompt": "x"}, "model is required"),
        (
            "/api/chat",
            {"model": "chat", "format": "xml", "messages": [{"role": "user"}]},
            "format:",
        ),
        ("/api/embed", {"model": "chat", "input": [1]}, "input: must be a string"),
        ("/api/generate", {"model": "chat", "keep_alive": "soon"}, "keep_alive: must be"),
    ],
)
def test_bad_requests_are_400s_in_ollamas_shape(
    server: CorralServer, path: str, body: dict[str, Any], expected: str
) -> None:
    answer = post(server, path, body)
    assert answer.status_code == 400
    assert list(answer.json()) == ["error"] and expected in answer.json()["error"]


def test_generate_without_prompt_loads_and_with_keep_alive_0_unloads(
    server: CorralServer, api: ollama.Client
) -> None:
    loaded = api.generate("keep")
    assert loaded.done and loaded.done_reason == "load"
    assert running(server) == ["keep"]
    unloaded = api.generate("keep", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert running(server) == []


def test_keep_alive_0_unloads_once_the_answer_is_done(
    server: CorralServer, api: ollama.Client
) -> None:
    before = server.log().count("stop keep reason=ttl")
    answer = api.chat("keep", messages=[{"role": "user", "content": "x"}], keep_alive=0)
    assert answer.message.content and answer.done
    wait_until(
        lambda: server.log().count("stop keep reason=ttl") == before + 1,
        10,
        "keep_alive 0 to unload 'keep' once idle",
    )
    assert running(server) == []


def test_keep_alive_duration_and_forever_show_in_ps(
    server: CorralServer, api: ollama.Client
) -> None:
    api.generate("keep", "x", keep_alive="10s")
    assert abs(expiry(server, "keep") - (time.time() + 10)) < 3
    api.generate("keep", "x", keep_alive=-1)  # the last request's value wins
    assert datetime.fromtimestamp(expiry(server, "keep")).year > 2300
    listed = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert [m["expires_at"] for m in listed if m["id"] == "keep"] == [None]


def test_openai_keep_alive_is_removed_before_forwarding_and_applied(server: CorralServer) -> None:
    body = {"model": "keep", "messages": [{"role": "user", "content": "x"}], "keep_alive": "1h"}
    answer = post(server, "/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text
    assert "keep_alive" not in answer.json()["received"]
    listed = httpx.get(f"{server.url}/v1/models").json()["data"]
    (expires,) = [m["expires_at"] for m in listed if m["id"] == "keep"]
    assert abs(expires - (time.time() + 3600)) < 5
    assert abs(expiry(server, "keep") - expires) < 2, "/api/ps and /v1/models agree"

    streamed = post(server, "/v1/chat/completions", {**body, "keep_alive": 0, "stream": True})
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    wait_until(lambda: running(server) == [], 10, "keep_alive 0 on the OpenAI API to unload")


def test_openai_bad_keep_alive_is_a_400_in_the_openai_shape(server: CorralServer) -> None:
    answer = post(server, "/v1/completions", {"model": "keep", "prompt": "x", "keep_alive": []})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("keep_alive: must be")


def test_a_client_hang_up_stops_the_upstream_generation(server: CorralServer) -> None:
    body = {"model": "slow", "prompt": "x"}
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=30) as answer:
        first = json.loads(next(answer.iter_lines()))
        assert first["done"] is False
    wait_until(
        lambda: (
            "disconnected POST /v1/chat/completions" in httpx.get(f"{server.url}/logs/slow").text
        ),
        10,
        "the fake upstream to see the hang-up",
    )
    again = post(server, "/api/generate", {**body, "stream": False, "options": {"seed": 2}})
    assert again.status_code == 200, "the lease was given back"


def test_a_child_crash_mid_stream_ends_with_an_error_object(
    server: CorralServer, api: ollama.Client
) -> None:
    answer = post(server, "/api/chat", {"model": "crashy", "messages": [{"role": "user"}]})
    objects = lines(answer)
    assert objects[0]["message"]["content"] == "crashy:"
    assert "stopped mid-answer" in objects[-1]["error"]
    # A request sent before corral notices the exit would meet a dead port (a 502) instead.
    wait_until(lambda: "crashy" not in running(server), 10, "corral to notice the crash")
    with pytest.raises(ollama.ResponseError, match="stopped mid-answer"):
        list(api.chat("crashy", messages=[{"role": "user"}], stream=True))


def test_files_in_a_model_dir_are_listed_with_their_size(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny-Q8_0.gguf").write_bytes(b"GGUF" + bytes(60))
    with CorralServer({"models_path": str(folder)}, tmp_path) as found:
        (entry,) = httpx.get(f"{found.url}/api/tags").json()["models"]
        assert entry["name"] == "tiny-Q8_0" and entry["size"] == 64
        assert entry["details"]["quantization_level"] == "Q8_0"
        assert httpx.get(f"{found.url}/api/ps").json() == {"models": []}


def test_two_models_over_one_file_list_apart_with_their_details(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "one.gguf", arch="llama")
    config = {
        "models": [
            model("chat", path=str(gguf)),
            model("embed", path=str(gguf), args=["--embeddings", "--pooling", "mean"]),
        ]
    }
    with (
        CorralServer(config, tmp_path) as two,
        ollama.Client(host=two.url, timeout=30) as client,
    ):
        listed = client.list().models
        # llm-ollama groups models by digest: one digest would make `embed` an alias of chat.
        assert len({m.digest for m in listed}) == 2
        for entry in listed:
            assert entry.details is not None
            assert entry.details.family == "llama" and entry.details.families == ["llama"]
            assert entry.details.parameter_size == "30"
            assert entry.details.quantization_level == "Q4_K_M"
            assert entry.details == client.show(entry.model or "").details
        client.generate("chat")  # loads it
        (running,) = client.ps().models
        assert running.details == listed[0].details and running.digest == listed[0].digest
