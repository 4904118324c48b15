"""Ollama <-> OpenAI translation, without a server: requests, answers, streams, entries."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.api.ollama import answers as ollama_answers
from corral.supervisor.api.ollama import models as ollama_models
from corral.supervisor.api.ollama import requests as ollama
from corral.supervisor.api.ollama import stream as ollama_stream
from corral.supervisor.errors import BadRequest, child_message
from corral.supervisor.runtime.child import embeddings
from tests.gguf_files import write_gguf

CLOCK = ollama_answers.Clock(arrived_ns=1_000, ready_ns=5_000)
TIMINGS = {"prompt_n": 7, "prompt_ms": 1.5, "predicted_n": 4, "predicted_ms": 20.25}
USAGE = {"prompt_tokens": 9, "completion_tokens": 4}


def test_options_map_to_sampling_fields_and_load_time_ones_are_dropped() -> None:
    body = {
        "options": {
            "num_predict": 8,
            "temperature": 0.1,
            "top_p": 0.9,
            "top_k": 20,
            "min_p": 0.05,
            "seed": 42,
            "stop": ["\n"],
            "repeat_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "num_keep": 4,
            "num_ctx": 8192,
            "num_gpu": 99,
            "num_thread": 4,
            "mirostat": None,
        }
    }
    assert ollama.sampling(body) == {
        "max_tokens": 8,
        "temperature": 0.1,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "seed": 42,
        "stop": ["\n"],
        "repeat_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "n_keep": 4,
    }


@pytest.mark.parametrize("unlimited", [-1, -2])
def test_unlimited_num_predict_leaves_llama_server_its_default(unlimited: int) -> None:
    assert ollama.sampling({"options": {"num_predict": unlimited}}) == {}


def test_format_json_and_schema_become_response_format() -> None:
    assert ollama.sampling({"format": "json"}) == {"response_format": {"type": "json_object"}}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    got = ollama.sampling({"format": schema})["response_format"]
    assert got == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert ollama.sampling({"format": ""}) == {}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"format": "xml"}, 'format: must be "json" or a JSON schema object, got "xml"'),
        ({"options": [1]}, "options: must be an object, got [1]"),
    ],
)
def test_bad_format_and_options_are_located_400s(body: dict[str, Any], expected: str) -> None:
    with pytest.raises(BadRequest) as caught:
        ollama.sampling(body)
    assert caught.value.message == expected


def test_chat_request_carries_messages_tools_images_and_streams_with_usage() -> None:
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "look", "images": ["iVBORw0KGgo="]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "now", "arguments": {"tz": "UTC"}}}],
            },
            {"role": "tool", "content": "12:00", "tool_name": "now"},
        ],
        "tools": [tool],
        "think": False,
        "options": {"num_predict": 3},
    }
    got = ollama.chat_request(body, stream=True)
    assert got["stream"] is True and got["stream_options"] == {"include_usage": True}
    assert got["max_tokens"] == 3 and got["tools"] == [tool]
    assert got["chat_template_kwargs"] == {"enable_thinking": False}
    image = got["messages"][0]["content"][1]
    assert image == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    call = got["messages"][1]["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"tz": "UTC"}
    assert got["messages"][2] == {"role": "tool", "content": "12:00", "name": "now"}
    assert "stream_options" not in ollama.chat_request(body, stream=False)


def test_a_message_without_a_role_is_located() -> None:
    with pytest.raises(BadRequest, match=r"messages\[1\]: must be an object with a role"):
        ollama.chat_request({"model": "m", "messages": [{"role": "user"}, {"content": "x"}]}, False)


def test_generate_goes_through_the_chat_template_unless_raw() -> None:
    path, got = ollama.generate_request(
        {"model": "m", "prompt": "Hi", "system": "Be brief."}, stream=False
    )
    assert path == "/v1/chat/completions"
    assert got["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    path, got = ollama.generate_request({"model": "m", "prompt": "Hi", "raw": True}, False)
    assert path == "/v1/completions" and got["prompt"] == "Hi"


def test_generate_with_a_suffix_goes_to_infill() -> None:
    body = {
        "model": "m",
        "prompt": "def f(",
        "suffix": "    return x",
        "options": {"num_predict": 9},
    }
    path, got = ollama.generate_request(body, stream=True)
    assert path == "/infill"
    assert got == {
        "model": "m",
        "input_prefix": "def f(",
        "input_suffix": "    return x",
        "max_tokens": 9,
        "stream": False,  # answered whole, then sent as one line
    }


def test_infill_answer_has_the_generate_shape() -> None:
    native = {"content": "x):", "stop_type": "limit", "tokens_evaluated": 7, "tokens_predicted": 2}
    got = ollama_answers.infill_answer("m", native, CLOCK, 10_000)
    assert got["response"] == "x):" and got["done"] is True and got["done_reason"] == "length"
    assert got["prompt_eval_count"] == 7 and got["eval_count"] == 2


@pytest.mark.parametrize(
    ("think", "fields"),
    [
        (True, {"chat_template_kwargs": {"enable_thinking": True}}),
        (False, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("high", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "high"}),
        ("low", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "low"}),
    ],
)
def test_think_maps_to_llama_servers_reasoning_settings(think: object, fields: object) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "think": think}
    got = ollama.chat_request(body, False)
    assert {k: got[k] for k in ("chat_template_kwargs", "reasoning_effort") if k in got} == fields
    assert "chat_template_kwargs" not in ollama.chat_request({**body, "think": None}, False)


def test_an_unknown_think_level_is_a_bad_request() -> None:
    body = {"model": "m", "messages": [], "think": "max"}
    with pytest.raises(BadRequest, match=r'think: must be true, false, "high", "medium", "low"'):
        ollama.chat_request(body, False)


def test_num_ctx_above_the_served_context_warns() -> None:
    assert ollama.context_warning({"options": {"num_ctx": 4096}}, "m", 4096) is None
    assert ollama.context_warning({}, "m", 4096) is None
    warning = ollama.context_warning({"options": {"num_ctx": 32768}}, "m", 4096)
    assert warning is not None
    assert "options.num_ctx 32768 is above its context_size 4096" in warning


def test_whole_chat_answer_has_ollama_fields_and_nanosecond_durations() -> None:
    answer = {
        "choices": [
            {
                "message": {"content": "Hello", "reasoning_content": "hmm"},
                "finish_reason": "length",
            }
        ],
        "usage": USAGE,
        "timings": TIMINGS,
    }
    got = ollama_answers.chat_answer("m:latest", answer, CLOCK, now_ns=100_000)
    assert got["message"] == {"role": "assistant", "content": "Hello", "thinking": "hmm"}
    assert got["done"] is True and got["done_reason"] == "length"
    assert got["total_duration"] == 99_000 and got["load_duration"] == 4_000
    assert got["prompt_eval_count"] == 9 and got["eval_count"] == 4
    assert got["prompt_eval_duration"] == 1_500_000 and got["eval_duration"] == 20_250_000
    assert datetime.fromisoformat(got["created_at"]).tzinfo is not None


def test_tool_calls_come_back_with_object_arguments() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    answer = {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}
    got = ollama_answers.chat_answer("m", answer, CLOCK, 0)
    assert got["message"]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert got["done_reason"] == "stop"


def test_generate_answer_reads_text_completions_and_chat_completions() -> None:
    text = {"choices": [{"text": "raw out", "finish_reason": "stop"}], "usage": USAGE}
    got = ollama_answers.generate_answer("m", text, CLOCK, 10_000)
    assert got["response"] == "raw out" and "message" not in got
    assert list(got)[:3] == ["model", "created_at", "response"]
    chat = {"choices": [{"message": {"content": "templated"}, "finish_reason": "stop"}]}
    assert ollama_answers.generate_answer("m", chat, CLOCK, 10_000)["response"] == "templated"


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_stream_yields_pieces_then_one_done_object_with_stats() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    data = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="stop"),
        {"choices": [], "usage": USAGE, "timings": TIMINGS},
        b"[DONE]",
    )
    # Split mid-line: a chunk boundary must not lose or garble an event.
    objects = stream.feed(data[:30], 50_000) + stream.feed(data[30:], 60_000)
    objects += stream.close(70_000)
    assert [o["message"]["content"] for o in objects] == ["Hel", "lo", ""]
    assert [o["done"] for o in objects] == [False, False, True]
    last = objects[-1]
    assert last["done_reason"] == "stop" and last["eval_count"] == 4
    assert last["total_duration"] == 59_000
    assert not stream.failed


def test_generate_stream_uses_response_and_reads_text_chunks() -> None:
    stream = ollama_stream.Stream("generate", "m", CLOCK)
    text = {"choices": [{"index": 0, "text": " sky", "finish_reason": "length"}]}
    objects = stream.feed(sse(text, b"[DONE]"), 1) + stream.close(2)
    assert [o["response"] for o in objects] == [" sky", ""]
    assert objects[-1]["done_reason"] == "length"


def test_final_generate_answer_has_no_context() -> None:
    # Omitted on purpose (see answers.generate_answer): a client must not resend stale ids.
    text = {"choices": [{"text": "out", "finish_reason": "stop"}], "usage": USAGE}
    whole = ollama_answers.generate_answer("m", text, CLOCK, 10_000)
    stream = ollama_stream.Stream("generate", "m", CLOCK)
    chunk = {"choices": [{"index": 0, "text": "out", "finish_reason": "stop"}]}
    last = (stream.feed(sse(chunk, b"[DONE]"), 1) + stream.close(2))[-1]
    assert whole["done"] and last["done"]
    assert "context" not in whole and "context" not in last


def test_stream_assembles_tool_call_fragments_before_done() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    first = {"index": 0, "function": {"name": "f", "arguments": '{"x"'}}
    second = {"index": 0, "function": {"arguments": ": 2}"}}
    events = [
        {"choices": [{"delta": {"tool_calls": [first]}}]},
        {"choices": [{"delta": {"tool_calls": [second]}, "finish_reason": "tool_calls"}]},
    ]
    objects = stream.feed(sse(*events, b"[DONE]"), 1)
    assert objects[0]["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"x": 2}}}
    ]
    assert objects[-1]["done"] is True


#: What llama-server sent when num_predict cut its second call (measured with the demo
#: model): the first call whole, the second opened with its arguments at ``{``.
PARIS = {"index": 0, "id": "a", "function": {"name": "get_weather", "arguments": '{"city": '}}
PARIS_END = {"index": 0, "function": {"arguments": '"Paris"}'}}
OPENED = {"index": 1, "id": "b", "function": {"name": "get_weather", "arguments": "{"}}


def test_a_tool_call_cut_by_the_token_limit_is_dropped_streamed_and_whole() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    events = [
        {"choices": [{"delta": {"tool_calls": [PARIS]}}]},
        {"choices": [{"delta": {"tool_calls": [PARIS_END]}}]},
        {"choices": [{"delta": {"tool_calls": [OPENED]}}]},
        {"choices": [{"delta": {}, "finish_reason": "length"}]},
    ]
    objects = stream.feed(sse(*events, b"[DONE]"), 1)
    paris = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert objects[0]["message"]["tool_calls"] == paris
    assert objects[-1]["done_reason"] == "length"
    calls = [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"type": "function", "function": {"name": "get_weather", "arguments": "{"}},
    ]
    message = {"content": "", "tool_calls": calls}
    answer = {"choices": [{"message": message, "finish_reason": "length"}]}
    assert ollama_answers.chat_answer("m", answer, CLOCK, 0)["message"]["tool_calls"] == paris


def test_a_stream_whose_only_call_was_cut_sends_no_empty_call() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    events = [
        {"choices": [{"delta": {"tool_calls": [{**OPENED, "index": 0}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "length"}]},
    ]
    objects = stream.feed(sse(*events, b"[DONE]"), 1)
    assert [o for o in objects if o["message"].get("tool_calls")] == []
    assert objects[-1]["done"] is True


def test_a_stream_that_stops_short_ends_in_an_error_object() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    objects = stream.feed(sse(chunk("par")), 1) + stream.close(2)
    assert objects[0]["message"]["content"] == "par"
    assert "stopped mid-answer" in objects[-1]["error"] and stream.failed


def test_llama_servers_error_event_becomes_an_error_object() -> None:
    stream = ollama_stream.Stream("chat", "m", CLOCK)
    event = b'error: {"code": 500, "message": "context overflow", "type": "server_error"}\n\n'
    assert stream.feed(event, 1) == [{"error": "context overflow"}]
    assert stream.close(2) == [] and stream.failed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"error": {"code": 501, "message": "no embeddings"}}', "no embeddings"),
        (b'{"error": "plain"}', "plain"),
        (b"Not Found", "Not Found"),
        (b"", "the model's server answered 501 with no message"),
    ],
)
def test_upstream_error_message(content: bytes, message: str) -> None:
    assert child_message(501, content) == message


def test_embed_answer_orders_by_index_and_cuts_to_unit_length() -> None:
    answer = {
        "data": [{"index": 1, "embedding": [0.0, 1.0, 0.0]}, {"index": 0, "embedding": [3, 4, 9]}],
        "usage": {"prompt_tokens": 6},
    }
    got = ollama_answers.embed_answer("m", answer, 2, CLOCK, 9_000)
    assert got["embeddings"] == [[0.6, 0.8], [0.0, 1.0]]
    assert got["prompt_eval_count"] == 6 and got["total_duration"] == 8_000
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in got["embeddings"])


def test_embed_inputs_accept_a_string_or_strings_only() -> None:
    assert ollama.embed_inputs({"input": "a"}, "input") == ["a"]
    assert ollama.embed_inputs({"input": ["a", "b"]}, "input") == ["a", "b"]
    assert ollama.embed_inputs({}, "prompt") == []
    with pytest.raises(
        BadRequest, match=r"input: must be a string or a list of strings, got \[1\]"
    ):
        ollama.embed_inputs({"input": [1]}, "input")


MODEL = ModelConfig(
    name="qwen:3b",
    path=Path("/m/qwen2.5-3b-instruct-q4_k_m.gguf"),
    context_size=2048,
    parameters={"temperature": 0.2},
    system_prompt="Be brief.",
    chat_template="chatml",
)
FACTS = ollama_models.FileFacts(size=123, mtime=1_700_000_000.0)


def test_tag_entry_shape() -> None:
    got = ollama_models.tag_entry(MODEL, FACTS)
    assert got["name"] == got["model"] == "qwen:3b"
    assert got["size"] == 123 and len(got["digest"]) == 64
    assert got["modified_at"] == "2023-11-14T22:13:20Z"
    assert got["details"]["format"] == "gguf"
    assert got["details"]["quantization_level"] == "Q4_K_M"
    moved = ollama_models.FileFacts(size=123, mtime=1_700_000_001.0)
    assert ollama_models.tag_entry(MODEL, moved)["digest"] != got["digest"], (
        "a new file, a new digest"
    )


def test_ps_entry_expiry_vram_and_forever() -> None:
    got = ollama_models.ps_entry(MODEL, FACTS, expires_at=1_700_000_010.0, now=1_700_000_000.0)
    assert got["expires_at"] == "2023-11-14T22:13:30Z"
    assert got["size_vram"] == 123 and got["context_length"] == 2048
    forever = ollama_models.ps_entry(MODEL, FACTS, expires_at=None, now=1_700_000_000.0)
    assert datetime.fromisoformat(forever["expires_at"]).year > 2300
    cpu = MODEL.model_copy(update={"gpu_layers": 0})
    assert ollama_models.ps_entry(cpu, FACTS, None, 0.0)["size_vram"] == 0


def test_show_renders_a_modelfile() -> None:
    header = ollama_models.HeaderFacts(info=None, template="{{ tools }}", tools_refusal=None)
    got = ollama_models.show_answer(MODEL, FACTS, header)
    assert got["modelfile"].startswith("FROM /m/qwen2.5-3b-instruct-q4_k_m.gguf\n")
    assert "PARAMETER num_ctx 2048\n" in got["modelfile"]
    assert 'SYSTEM """Be brief."""' in got["modelfile"]
    # Ollama's columns: Continue reads num_ctx from here.
    assert got["parameters"] == f"{'num_ctx':<30} 2048\n{'temperature':<30} 0.2"
    assert got["template"] == "{{ tools }}"
    assert got["capabilities"] == ["completion", "tools"]
    assert got["model_info"] == {}  # no header read: nothing made up


def test_show_fills_details_and_model_info_from_the_gguf(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "t.gguf", arch="qwen2", context_length=32768, fim=True)
    model = MODEL.model_copy(update={"path": path, "parameters": {"max_tokens": 64}})
    header = ollama_models.read_header_facts(model)
    got = ollama_models.show_answer(model, FACTS, header)
    assert got["details"]["family"] == "qwen2" and got["details"]["families"] == ["qwen2"]
    assert got["details"]["parameter_size"] == "30"
    assert got["details"]["quantization_level"] == "Q4_K_M"
    info = got["model_info"]
    assert info["general.architecture"] == "qwen2"
    assert info["general.parameter_count"] == 30
    assert info["qwen2.context_length"] == 2048  # what it is served with, not 32768
    assert info["tokenizer.ggml.tokens"] is None  # arrays as null, as Ollama's show does
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert f"{'num_predict':<30} 64" in got["parameters"]  # Ollama's name for max_tokens
    assert "chatml.jinja" not in got["template"] and "<|im_start|>" in got["template"]
    assert got["capabilities"] == ["completion", "tools", "insert"]


def test_show_says_when_a_model_cannot_call_tools(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "e.gguf", arch="bert", pooling=True)
    embed = MODEL.model_copy(update={"path": path, "chat_template": None})
    got = ollama_models.show_answer(embed, FACTS, ollama_models.read_header_facts(embed))
    assert got["capabilities"] == ["embedding"]
    builtin = MODEL.model_copy(update={"chat_template": "llama3"})
    got = ollama_models.show_answer(builtin, FACTS, ollama_models.read_header_facts(builtin))
    assert got["capabilities"] == ["completion"] and got["template"] == "llama3"


@pytest.mark.parametrize(
    ("args", "embeds"),
    [
        (["--embeddings"], False),  # a generative GGUF pools with none: llama-server's 400
        (["--embeddings", "--pooling", "none"], False),
        (["--embeddings", "--pooling", "mean"], True),
        (["--embedding", "--pooling=cls"], True),
        (["--pooling", "mean"], False),  # no embeddings at all without the flag
    ],
)
def test_show_claims_embedding_only_when_the_model_can_embed(
    tmp_path: Path, args: list[str], embeds: bool
) -> None:
    path = write_gguf(tmp_path / "g.gguf", arch="gemma3")
    model = MODEL.model_copy(update={"path": path, "args": args})
    got = ollama_models.show_answer(model, FACTS, ollama_models.read_header_facts(model))
    assert ("embedding" in got["capabilities"]) is embeds
    refusal = embeddings.refusal(model)
    if embeds or ("--pooling" in args and "--embeddings" not in args):
        assert refusal is None
    else:
        assert refusal is not None and "add `--pooling mean` to its args" in refusal


def test_an_embedding_gguf_pools_by_its_header(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "e.gguf", arch="bert", pooling=True)
    model = MODEL.model_copy(update={"path": path, "args": ["--embeddings"]})
    assert embeddings.pooling(model, ollama_models.read_header(model)) == "mean"
    assert embeddings.refusal(model) is None


@pytest.mark.parametrize(
    ("count", "text"),
    [(268_098_176, "268.10M"), (8_000_000_000, "8B"), (7_615_616_512, "7.6B"), (30, "30")],
)
def test_parameter_size_reads_like_ollamas(count: int, text: str) -> None:
    assert ollama_models.human_number(count) == text


def test_load_answers() -> None:
    chat = ollama_answers.load_answer("chat", "m", "load")
    assert chat["message"] == {"role": "assistant", "content": ""}
    assert chat["done"] is True and chat["done_reason"] == "load"
    assert ollama_answers.load_answer("generate", "m", "unload")["response"] == ""


def test_a_malformed_tool_call_is_located() -> None:
    message = {"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}
    with pytest.raises(BadRequest, match=r"^messages\[0\]\.tool_calls\[0\]: must be"):
        ollama.chat_request({"model": "m", "messages": [message]}, False)
