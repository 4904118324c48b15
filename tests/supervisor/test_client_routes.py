"""What clients other than plain OpenAI chat call, against fake upstreams: one model by id,
llama.cpp's router endpoints, tools refused before anything loads, the num_ctx warning; and
the defaults of Anthropic's /v1/messages (routed to the real llama-server in tests/e2e)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.http.defaults import apply_defaults
from tests.gguf_files import write_gguf
from tests.support import CorralServer, fake_cmd, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    tmp = tmp_path_factory.mktemp("clients")
    config = {
        "default_ttl": 0,
        "models": [
            {
                "name": "chat",
                "aliases": ["c"],
                "cmd": fake_cmd("chat"),
                "system_prompt": "Be brief.",
                "parameters": {"max_tokens": 64},
            },
            {"name": "hidden", "cmd": fake_cmd("hidden"), "unlisted": True},
            # Never started: tools are refused from the config alone.
            {"name": "old", "path": str(write_gguf(tmp / "old.gguf")), "chat_template": "llama3"},
        ],
    }
    with CorralServer(config, tmp) as running:
        yield running


def post(server: CorralServer, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def test_retrieve_one_model_with_the_openai_client(server: CorralServer) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        assert client.models.retrieve("chat").id == "chat"
        assert client.models.retrieve("c").id == "chat"  # an alias names its model
        assert client.models.retrieve("hidden").id == "hidden"  # unlisted, still servable
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve("nope")
    error = caught.value.response.json()["error"]
    assert error["type"] == "model_not_found" and "available models: chat" in error["message"]


def test_anthropic_messages_get_the_models_defaults() -> None:
    model = ModelConfig(name="m", cmd=["x", "{port}"], system_prompt="Be brief.")
    model = model.model_copy(update={"parameters": {"max_tokens": 64, "temperature": 0.1}})
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "max_tokens": 5}
    assert apply_defaults(body, model, "/v1/messages")
    assert body["system"] == "Be brief."  # Anthropic's place for the system prompt
    assert body["max_tokens"] == 5 and body["temperature"] == 0.1  # the client's value wins


def router_status(server: CorralServer, name: str) -> str:
    listed = httpx.get(f"{server.url}/models").json()["data"]
    (entry,) = [m for m in listed if m["id"] == name]
    return str(entry["status"]["value"])


def test_router_list_load_and_unload(server: CorralServer) -> None:
    listed = httpx.get(f"{server.url}/models").json()
    assert [m["id"] for m in listed["data"]] == ["chat", "old"]  # unlisted stays hidden
    assert post(server, "/models/unload", {"model": "chat"}).status_code == 200
    assert router_status(server, "chat") == "unloaded"
    loaded = post(server, "/models/load", {"model": "c"})
    assert loaded.status_code == 200 and loaded.json() == {"success": True}
    assert router_status(server, "chat") == "loaded"
    (entry,) = [m for m in httpx.get(f"{server.url}/models").json()["data"] if m["id"] == "chat"]
    assert "--port" in " ".join(entry["status"]["args"])
    unloaded = post(server, "/models/unload", {"model": "chat"})
    assert unloaded.status_code == 200 and unloaded.json() == {"success": True}
    assert router_status(server, "chat") == "unloaded"


def test_router_errors_keep_the_openai_envelope(server: CorralServer) -> None:
    unknown = post(server, "/models/load", {"model": "nope"})
    assert unknown.status_code == 404 and "available models" in unknown.json()["error"]["message"]
    missing = post(server, "/models/unload", {})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("model is required")


def test_tools_refused_on_both_apis_before_loading(server: CorralServer) -> None:
    openai_body = {"model": "old", "messages": MESSAGES, "tools": TOOLS}
    refused = post(server, "/v1/chat/completions", openai_body)
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert message.startswith("model 'old' does not support tools: chat_template 'llama3'")
    ollama_body = {"model": "old", "messages": MESSAGES, "tools": TOOLS, "stream": False}
    refused = post(server, "/api/chat", ollama_body)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("old does not support tools: chat_template")
    assert "old" not in [m["model"] for m in httpx.get(f"{server.url}/running").json()["running"]]


def test_num_ctx_above_the_context_is_a_warning_in_the_log(server: CorralServer) -> None:
    body = {"model": "chat", "messages": MESSAGES, "stream": False}
    answer = post(server, "/api/chat", {**body, "options": {"num_ctx": 65536}})
    assert answer.status_code == 200, answer.text
    wait_until(
        lambda: "options.num_ctx 65536 is above its context_size 4096" in server.log(),
        5,
        "the num_ctx warning",
    )
