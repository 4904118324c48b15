"""More real clients against corral, the real llama-server and Gemma 3 270M: Anthropic's
Python SDK, the openai npm client sending tools, and what issue 27's clients tripped on:
a tool call cut by the token limit, llama-server's own meta, a model that cannot embed, and
the router's /props."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.e2e.tools import WEATHER, weather_shots
from tests.support import CorralServer, demo_model, node_client, npm_modules

pytestmark = pytest.mark.e2e

NAME = "gemma-3-270m"
NO_POOL = "gemma-no-pool"  # --embeddings without --pooling: llama-server pools with none


#: What this suite's corral serves (tests/e2e/conftest.py's ``server``).
SETTINGS = {
    "default_ttl": 0,
    "models": [
        demo_model(NAME, parameters={"max_tokens": 64}),
        demo_model(NO_POOL, args=["--embeddings"]),
    ],
}


def test_anthropic_sdk_messages_models_and_errors(server: CorralServer) -> None:
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as client:
        hi: Any = [{"role": "user", "content": "Say hello."}]
        message = client.messages.create(model=NAME, max_tokens=8, messages=hi)
        assert message.role == "assistant" and message.content[0].type == "text"
        assert 0 < message.usage.output_tokens <= 8
        with client.messages.stream(model=NAME, max_tokens=8, messages=hi) as stream:
            assert "".join(stream.text_stream)
        assert client.messages.count_tokens(model=NAME, messages=hi).input_tokens > 0
        listed = {m.id: m for m in client.models.list().data}
        assert listed[NAME].display_name == NAME and listed[NAME].type == "model"
        assert client.models.retrieve(NAME).created_at == listed[NAME].created_at
        with pytest.raises(anthropic.NotFoundError) as caught:
            client.messages.create(model="no-such-model", max_tokens=8, messages=hi)
        body: Any = caught.value.body
        assert body["error"]["type"] == "not_found_error"
    # llama-server's own refusal (its words, its status), in Anthropic's shape too.
    refused = httpx.post(f"{server.url}/v1/messages", json={"model": NAME, "max_tokens": 8})
    assert refused.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "'messages' is required"},
    }


def test_openai_js_client_with_tools(server: CorralServer) -> None:
    modules = npm_modules("openai", "openai@^5")
    script = Path(__file__).with_name("openai_js_client.mjs")
    got = node_client(script, modules, server.url, NAME)
    for answer in (got["whole"], got["streamed"]):
        # finish_reason may be "length": the model goes on to a second call that the limit
        # cuts (the README's client notes: the AI SDK then runs no tool).
        call = answer["calls"][0]
        assert call["name"] == "get_weather" and "city" in json.loads(call["arguments"])
    assert got["whole"]["model"] == NAME
    assert got["responses_model"] == [NAME, NAME]  # response.created, response.in_progress


def test_a_tool_call_cut_by_num_predict_is_dropped_on_api_chat(server: CorralServer) -> None:
    # The sequence: two earlier calls, then the limit cuts the model's second call.
    messages = weather_shots()
    options = {"num_predict": 48, "temperature": 0}
    with ollama.Client(host=server.url, timeout=120) as client:
        for stream in (False, True):
            parts = client.chat(
                NAME, messages=messages, tools=[WEATHER], options=options, stream=stream
            )
            answers = list(parts) if stream else [parts]
            assert answers[-1].done_reason == "length"
            calls = [c for a in answers for c in a.message.tool_calls or []]
            assert calls, "the model made no whole call before the limit"
            assert all(c.function.arguments for c in calls), calls  # none with {}


def test_model_list_meta_is_llama_servers_own(server: CorralServer) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        meta = client.models.retrieve(NAME).model_dump()["meta"]
    own = httpx.get(f"{server.url}/upstream/{NAME}/v1/models", timeout=60).json()
    (child,) = [m for m in own["data"] if "meta" in m]
    assert meta == child["meta"]


def test_a_model_that_cannot_embed_says_so_and_names_the_fix(server: CorralServer) -> None:
    with ollama.Client(host=server.url, timeout=60) as client:
        assert "embedding" not in (client.show(NO_POOL).capabilities or [])
        with pytest.raises(ollama.ResponseError) as caught:
            client.embed(NO_POOL, input="hello")
        assert caught.value.status_code == 400
        assert "add `--pooling mean` to its args" in caught.value.error
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as oai,
        pytest.raises(openai.BadRequestError, match="--pooling mean"),
    ):
        oai.embeddings.create(model=NO_POOL, input="hello")


def test_router_props_of_a_model_is_its_childs(server: CorralServer) -> None:
    props = httpx.get(f"{server.url}/props", params={"model": NAME}, timeout=60).json()
    assert props["default_generation_settings"]["n_ctx"] == 1024
    assert props["model_path"] == "gemma-3-270m-q4_k_m.gguf"
    assert httpx.get(f"{server.url}/props").json()["role"] == "router"
