"""llama.cpp's router endpoints as its web UI and clients call them, against a real corral
with fake upstreams: the model list's fields, ``/props`` with and without a model, and the
``/models/sse`` event stream."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.observe.helpers import Follower
from tests.support import CorralServer, fake_cmd, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    tmp = tmp_path_factory.mktemp("router")
    gguf = tmp / "chat-q4_k_m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    models = [
        # As llama-server, the child names its model by the file's absolute path.
        {"name": "chat", "path": str(gguf), "cmd": fake_cmd("chat", "--model-field", str(gguf))},
        {"name": "seer", "cmd": fake_cmd("seer"), "args": ["--mmproj", "p.gguf"]},
        {"name": "pulled:1b", "source": "pulled:1b", "cmd": fake_cmd("pulled")},
    ]
    with CorralServer({"default_ttl": 0, "models": models}, tmp) as running:
        yield running


def test_models_have_architecture_and_in_cache(server: CorralServer) -> None:
    listed = {m["id"]: m for m in httpx.get(f"{server.url}/models").json()["data"]}
    text = {"input_modalities": ["text"], "output_modalities": ["text"]}
    assert listed["chat"]["architecture"] == text
    assert listed["seer"]["architecture"]["input_modalities"] == ["text", "image"]
    # A local file is not in the router's cache; a model corral pulls from its source is.
    assert listed["chat"]["in_cache"] is False and listed["pulled:1b"]["in_cache"] is True


def test_props_without_a_model_says_router(server: CorralServer) -> None:
    props = httpx.get(f"{server.url}/props").json()
    assert props["role"] == "router" and props["model_path"] == "none"
    assert props["default_generation_settings"]["n_ctx"] == 0


def test_props_of_a_model_comes_from_its_child_loaded_first(server: CorralServer) -> None:
    httpx.post(f"{server.url}/models/unload", json={"model": "chat"}, timeout=30)
    refused = httpx.get(f"{server.url}/props", params={"model": "chat", "autoload": "false"})
    assert refused.status_code == 400 and "not loaded" in refused.json()["error"]["message"]
    props = httpx.get(f"{server.url}/props", params={"model": "chat"}, timeout=30).json()
    assert props["upstream"] == "chat" and props["default_generation_settings"]["n_ctx"] == 1024
    assert props["model_path"] == "chat-q4_k_m.gguf"  # the file's name, not where it lives
    unknown = httpx.get(f"{server.url}/props", params={"model": "nope"})
    assert unknown.status_code == 404


def test_models_sse_reports_each_status_change(server: CorralServer) -> None:
    httpx.post(f"{server.url}/models/unload", json={"model": "chat"}, timeout=30)
    with Follower(server.url, "/models/sse") as follower:
        httpx.post(f"{server.url}/models/load", json={"model": "chat"}, timeout=30)
        httpx.post(f"{server.url}/models/unload", json={"model": "chat"}, timeout=30)

        def changes() -> list[object]:
            return [e["data"] for e in follower.events if e["model"] == "chat"]

        wait_until(lambda: len(changes()) >= 3, 10, "three status changes of chat")
    assert changes()[:3] == [
        {"status": "loading"},
        {"status": "loaded"},
        {"status": "unloaded", "exit_code": 0},
    ]
    assert {e["event"] for e in follower.events} == {"status_change"}
