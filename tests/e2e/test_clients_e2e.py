"""Real clients, unchanged, against corral, the real llama-server and Gemma 3 270M: the
openai SDK (async, stream, retrieve, parse, tools), the ollama client (show, tools), curl for
llama.cpp's router endpoints and Anthropic's /v1/messages, and the README's own snippets.

Gemma 3 270M is a base model. To make it call a tool, the conversation shows it two calls
first (``tool_choice: "required"`` alone does not: llama-server builds no grammar for it with
this template, see the README's client notes); what is tested is that the call travels
through corral's template and comes back parsed by the client, with valid JSON arguments.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import ollama
import openai
import pydantic
import pytest

from tests.e2e.tools import WEATHER, weather_shots
from tests.support import CorralServer, demo_model, node_client, npm_modules

pytestmark = pytest.mark.e2e

NAME = "gemma-3-270m"
README = Path(__file__).parents[2] / "README.md"


#: What this suite's corral serves (tests/e2e/conftest.py's ``server``).
SETTINGS = {
    "default_ttl": 0,
    "models": [
        # As examples/demo.yaml, plus embeddings (mean pooling) for the ollama clients.
        demo_model(
            NAME,
            aliases=["demo"],
            args=["--embeddings", "--pooling", "mean"],
            parameters={"max_tokens": 64},
        ),
        # A built-in name corral has no Jinja for: never started, tools refused.
        demo_model("gemma-llama3", chat_template="llama3"),
        # A preset: it shares the first one's child, whose answers carry that one's name.
        {"name": "demo-terse", "from": NAME, "parameters": {"max_tokens": 8}, "unlisted": True},
    ],
}


def openai_shots() -> Any:  # the SDK's TypedDicts, which a dict[str, Any] is not
    """Two weather questions answered by a call each, then the question to answer."""
    messages: list[dict[str, Any]] = []
    for n, (city, weather) in enumerate([("Rome", "sunny"), ("Oslo", "rain")]):
        arguments = json.dumps({"city": city})
        call: dict[str, Any] = {"id": f"call_{n}", "type": "function"}
        call["function"] = {"name": "get_weather", "arguments": arguments}
        messages += [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": weather},
        ]
    return [*messages, {"role": "user", "content": "What is the weather in Paris?"}]


def test_openai_tool_call_made_by_the_model_and_parsed_by_the_client(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(
        model=NAME,
        messages=openai_shots(),
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=40,
    )
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict) and isinstance(arguments["city"], str)


@pytest.mark.parametrize("asked", [NAME, "demo", "demo-terse"])
def test_openai_answers_name_the_model_as_asked(oai: openai.OpenAI, asked: str) -> None:
    # The child names the model as the entry that started it (its --alias) and nothing rewrites
    # that; an alias or a preset is rewritten: the client reads back what it asked for.
    hello: Any = [{"role": "user", "content": "Say hello."}]
    whole = oai.chat.completions.create(model=asked, messages=hello, max_tokens=4)
    assert whole.model == asked
    chunks = list(
        oai.chat.completions.create(model=asked, messages=hello, max_tokens=4, stream=True)
    )
    assert len(chunks) > 1 and {c.model for c in chunks} == {asked}
    assert oai.completions.create(model=asked, prompt="Hi", max_tokens=2).model == asked


def test_ollama_tool_call_and_capabilities(api: ollama.Client) -> None:
    messages = weather_shots()
    answer = api.chat(NAME, messages=messages, tools=[WEATHER], options={"temperature": 0})
    calls = answer.message.tool_calls or []
    assert calls, f"no tool call: {answer.message.content!r}"
    for call in calls:  # Ollama's API has no parallel_tool_calls: the model may make several
        assert call.function.name == "get_weather"
        assert isinstance(call.function.arguments, dict) and "city" in call.function.arguments
    shown = api.show(NAME)
    assert shown.capabilities is not None and "tools" in shown.capabilities


def test_tools_refused_for_a_template_without_them(
    oai: openai.OpenAI, api: ollama.Client, server: CorralServer
) -> None:
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        oai.chat.completions.create(
            model="gemma-llama3",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[WEATHER],
        )
    with pytest.raises(ollama.ResponseError, match="does not support tools") as caught:
        api.chat("gemma-llama3", messages=[{"role": "user", "content": "x"}], tools=[WEATHER])
    assert caught.value.status_code == 400
    assert "tools" not in (api.show("gemma-llama3").capabilities or [])
    assert "gemma-llama3" not in [m["model"] for m in server.running()]


def test_openai_async_stream_retrieve_and_parse(server: CorralServer) -> None:
    class Colour(pydantic.BaseModel):
        colour: Literal["red", "green", "blue"]

    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120
        ) as client:
            assert (await client.models.retrieve(NAME)).id == NAME
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve("no-such-model")
            hello: Any = [{"role": "user", "content": "Say hello."}]
            whole = await client.chat.completions.create(
                model=NAME,
                messages=hello,
                max_tokens=8,
            )
            assert whole.choices[0].message.content
            stream = await client.chat.completions.create(
                model=NAME,
                messages=hello,
                max_tokens=8,
                stream=True,
            )
            pieces = [c.choices[0].delta.content async for c in stream if c.choices]
            assert len(pieces) > 2 and "".join(p or "" for p in pieces)
            parsed = await client.chat.completions.parse(
                model=NAME,
                messages=[{"role": "user", "content": "Name a colour, as JSON."}],
                response_format=Colour,
                temperature=0,
            )
            colour = parsed.choices[0].message.parsed
            assert isinstance(colour, Colour) and colour.colour in ("red", "green", "blue")

    asyncio.run(run())


def test_show_reads_the_gguf_header(api: ollama.Client) -> None:
    shown = api.show(NAME)
    assert shown.details is not None
    assert shown.details.family == "gemma3" and shown.details.parameter_size == "268.10M"
    assert shown.details.quantization_level == "Q4_K_M"
    info = shown.modelinfo or {}
    assert info["general.architecture"] == "gemma3"
    assert info["gemma3.context_length"] == 1024  # the context it is served with
    assert info["general.parameter_count"] == 268_098_176
    assert shown.parameters is not None and re.search(r"^num_ctx +1024$", shown.parameters, re.M)
    assert shown.template is not None and "<start_of_turn>" in shown.template
    assert shown.capabilities == ["completion", "embedding", "tools"]


def test_generate_with_suffix_on_a_model_without_fim_is_a_400(api: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="does not support insert") as caught:
        api.generate(NAME, prompt="def add(a, b):", suffix="    return c")
    assert caught.value.status_code == 400


def curl(*args: str) -> Any:
    done = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_router_endpoints_with_curl(server: CorralServer) -> None:
    body = json.dumps({"model": NAME})
    assert curl("-X", "POST", f"{server.url}/models/load", "-d", body) == {"success": True}
    listed = {m["id"]: m for m in curl(f"{server.url}/models")["data"]}
    assert listed[NAME]["status"]["value"] == "loaded"
    assert listed["gemma-llama3"]["status"] == {"value": "unloaded"}
    assert curl("-X", "POST", f"{server.url}/models/unload", "-d", body) == {"success": True}
    listed = {m["id"]: m for m in curl(f"{server.url}/models")["data"]}
    assert listed[NAME]["status"]["value"] == "unloaded"


def test_the_child_is_started_with_the_name_of_the_model_that_starts_it(
    server: CorralServer,
) -> None:
    # Its --alias: llama-server then names the model so in every answer (and in /props).
    for name in ("demo-terse", NAME):  # a preset shares the child: the one that starts it
        body = json.dumps({"model": name})
        assert curl("-X", "POST", f"{server.url}/models/unload", "-d", body) == {"success": True}
        assert curl("-X", "POST", f"{server.url}/models/load", "-d", body) == {"success": True}
        assert curl(f"{server.url}/upstream/{NAME}/props")["model_alias"] == name


def test_anthropic_messages_with_curl(server: CorralServer) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    body = json.dumps({"model": NAME, "max_tokens": 8, "messages": messages})
    answer = curl(f"{server.url}/v1/messages", "-H", "content-type: application/json", "-d", body)
    assert answer["type"] == "message" and answer["role"] == "assistant"
    assert answer["content"][0]["type"] == "text" and answer["usage"]["output_tokens"] <= 8
    count = json.dumps({"model": NAME, "messages": messages})
    counted = curl(f"{server.url}/v1/messages/count_tokens", "-d", count)
    assert counted["input_tokens"] > 0


def readme_snippets(language: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)
    if language == "sh":  # the curl commands, with their continuation lines
        commands = re.findall(r"^curl .*?(?<!\\)$", "\n".join(blocks), re.M | re.S)
        return [c for c in commands if "11434" in c]
    return [b for b in blocks if "127.0.0.1:11434" in b]


def test_readme_snippets_run_as_written(server: CorralServer) -> None:
    commands = readme_snippets("sh")
    assert commands, "the README has curl snippets"
    for command in commands:
        done = subprocess.run(
            command.replace("http://127.0.0.1:11434", server.url),
            shell=True,
            capture_output=True,
            check=True,
        )
        answer = json.loads(done.stdout)
        # The demo's default limit holds where the snippet sets none.
        assert 0 < answer["usage"]["completion_tokens"] <= 64, answer
    scripts = readme_snippets("python")
    assert len(scripts) >= 2, "the README's openai and ollama examples"
    for script in scripts:
        ran = subprocess.run(
            [sys.executable, "-c", script.replace("http://127.0.0.1:11434", server.url)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip(), f"the snippet printed nothing:\n{script}"


@pytest.fixture(scope="module")
def ollama_js() -> Path:
    return npm_modules("ollama", "ollama@^0.6")


def test_ollama_js_client(server: CorralServer, ollama_js: Path) -> None:
    script = Path(__file__).with_name("ollama_js_client.mjs")
    got = node_client(script, ollama_js, server.url, NAME)
    assert NAME in got["list"] and NAME in got["ps"]
    assert got["show"] == {"family": "gemma3", "capabilities": ["completion", "embedding", "tools"]}
    assert got["chat"]["done"] is True and 0 < got["chat"]["eval_count"] <= 8
    assert got["generate_pieces"] > 2, "the answer arrived in one piece, not streamed"
    assert len(got["embed"]) == 2 and got["embed"][0] > 100
    assert got["tool_calls"], "the model made no tool call"
    assert all(c["name"] == "get_weather" and "city" in c["arguments"] for c in got["tool_calls"])
    assert got["unknown"]["status"] == 404 and "not found" in got["unknown"]["message"]
