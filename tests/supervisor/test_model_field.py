"""The ``model`` of OpenAI answers is the name the client asked for, not llama-server's file
path: the transform's bytes, and real openai clients (whole and streamed) against a fake
upstream that answers with a path, as llama-server does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from corral.supervisor.api import openai as openai_routes
from corral.supervisor.http import model_field
from corral.supervisor.http.model_field import ModelField
from corral.supervisor.http.scrub import HidePaths
from tests.support import CorralServer, fake_cmd

PATH = "/var/lib/corral/models/chat-q4_k_m.gguf"
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def run(chunks: list[bytes], name: str = "chat") -> bytes:
    transform = ModelField(name)
    return b"".join(transform.feed(c) for c in chunks) + transform.close(broken=False)


def test_whole_answer_gets_the_asked_name() -> None:
    answer = json.dumps({"id": "x", "model": PATH, "choices": [], "usage": {"n": 1}}).encode()
    assert json.loads(run([answer], "c")) == {
        "id": "x",
        "model": "c",
        "choices": [],
        "usage": {"n": 1},
    }


def test_every_stream_chunk_even_one_split_inside_the_pair() -> None:
    event = b'data: {"choices":[],"model":"' + PATH.encode() + b'","object":"x"}\n\n'
    stream = event * 3 + b"data: [DONE]\n\n"
    for cut in range(1, len(stream)):  # every place a network read may end
        out = run([stream[:cut], stream[cut:]])
        assert out == stream.replace(PATH.encode(), b"chat"), cut


def test_text_a_model_wrote_is_never_touched() -> None:
    # Inside a JSON string every quote is escaped: `"model":"x"` there is content.
    content = json.dumps({"content": 'say "model": "x"', "model": PATH}).encode()
    assert json.loads(run([content])) == {"content": 'say "model": "x"', "model": "chat"}


def test_escapes_in_either_name_stay_valid_json() -> None:
    answer = json.dumps({"model": 'C:\\models\\a "b".gguf', "n": 1}).encode()
    assert json.loads(run([answer], 'team/m "x"')) == {"model": 'team/m "x"', "n": 1}


def test_an_answer_without_the_field_passes_unchanged() -> None:
    stream = [b'data: {"a": 1}\n\n', b'data: {"b"', b": 2}\n\n"]
    assert run(stream) == b"".join(stream)


def test_a_responses_object_without_the_field_gets_it() -> None:
    # llama-server's opening events, compact; the completed one names the model already.
    created = b'data: {"type":"response.created","response":{"id":"r","object":"response"}}\n\n'
    done = b'data: {"response":{"object":"response","model":"' + PATH.encode() + b'"}}\n\n'
    out = run([created[:30], created[30:] + done], "m")
    first, second = (json.loads(e.removeprefix(b"data: ")) for e in out.split(b"\n\n")[:2])
    assert first["response"] == {"id": "r", "object": "response", "model": "m"}
    assert second["response"] == {"object": "response", "model": "m"}


@pytest.mark.parametrize(
    ("path", "asked", "answers_as", "rewritten"),
    [
        ("/v1/chat/completions", "chat", "chat", False),  # the child's --alias: right as sent
        ("/v1/completions", "chat", "chat", False),
        ("/v1/chat/completions", "c", "chat", True),  # an alias
        ("/v1/chat/completions", "pirate", "chat", True),  # a preset on another's child
        ("/v1/chat/completions", "chat", None, True),  # a cmd, a user's own --alias, a peer
        ("/v1/responses", "chat", "chat", True),  # its opening events name no model
    ],
)
def test_the_rewrite_runs_only_where_the_child_names_the_model_otherwise(
    path: str, asked: str, answers_as: str | None, rewritten: bool
) -> None:
    assert model_field.needed(path, asked, answers_as) is rewritten
    # What the route sends the answer through: the path always hidden, `model` only if needed.
    transform = openai_routes.answer_transform(path, asked, answers_as, Path(PATH))
    chunk = b'data: {"model":"unchanged","settings":{"m":"' + PATH.encode() + b'"}}\n\n'
    assert transform is not None
    out = transform.feed(chunk) + transform.close(broken=False)
    model = asked if rewritten else "unchanged"
    assert out == f'data: {{"model":"{model}","settings":{{"m":"chat-q4_k_m.gguf"}}}}\n\n'.encode()
    assert isinstance(transform, HidePaths) is not rewritten  # no ModelField in the way


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    config = {
        "default_ttl": 0,
        "models": [
            {"name": "chat", "aliases": ["c"], "cmd": fake_cmd("chat", "--model-field", PATH)}
        ],
    }
    with CorralServer(config, tmp_path_factory.mktemp("model-field")) as running:
        yield running


@pytest.mark.parametrize("asked", ["chat", "c"])
def test_openai_client_reads_the_name_it_asked_for(server: CorralServer, asked: str) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        whole = client.chat.completions.create(model=asked, messages=MESSAGES)
        assert whole.model == asked
        chunks = list(client.chat.completions.create(model=asked, messages=MESSAGES, stream=True))
        assert len(chunks) > 2 and {c.model for c in chunks} == {asked}
        completion = client.completions.create(model=asked, prompt="hi")
        assert completion.model == asked
        assert client.embeddings.create(model=asked, input="hi").model == asked
        events = list(client.responses.create(model=asked, input="hi", stream=True))
        opening = [e for e in events if e.type in ("response.created", "response.in_progress")]
        assert len(opening) == 2 and {e.response.model for e in opening} == {asked}


def test_upstream_passthrough_is_left_as_the_child_sent_it(server: CorralServer) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    raw = httpx.post(f"{server.url}/upstream/chat/v1/chat/completions", json=body, timeout=30)
    assert raw.json()["model"] == PATH
