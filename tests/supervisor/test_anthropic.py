"""Anthropic's API as its Python SDK sees it, against a real corral with a fake upstream:
every error of ``/v1/messages`` in Anthropic's shape, and the model list's fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.support import CorralServer, fake_cmd

CONFIG = {
    "api_keys": ["sekrit"],
    "models": [
        {"name": "chat", "cmd": fake_cmd("chat")},
        {
            "name": "crashy",
            "cmd": fake_cmd("crashy", "--tokens", "10", "--crash-after-chunks", "3"),
        },
    ],
}
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("anthropic")) as running:
        yield running


@pytest.fixture
def client(server: CorralServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="sekrit", max_retries=0) as sdk:
        yield sdk


def anthropic_error(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    error: dict[str, Any] = body["error"]
    return error


def test_an_unknown_model_is_a_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="nope", max_tokens=8, messages=HI)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "model 'nope' not found; available models: chat" in body["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind"),
    [
        ({"x-api-key": "sekrit"}, b"{not json", 400, "invalid_request_error"),
        ({"x-api-key": "sekrit"}, b'{"messages": []}', 400, "invalid_request_error"),
        ({"x-api-key": "wrong"}, b'{"model": "chat"}', 401, "authentication_error"),
        ({"x-api-key": "sekrit", "Origin": "https://evil.example"}, b"{}", 403, "permission_error"),
    ],
)
def test_every_refusal_of_the_route_speaks_anthropic(
    server: CorralServer, headers: dict[str, str], body: bytes, status: int, kind: str
) -> None:
    answer = httpx.post(f"{server.url}/v1/messages", content=body, headers=headers, timeout=10)
    assert answer.status_code == status
    assert anthropic_error(answer)["type"] == kind
    count = httpx.post(
        f"{server.url}/v1/messages/count_tokens", content=body, headers=headers, timeout=10
    )
    assert count.status_code == status and anthropic_error(count)["type"] == kind


def test_a_wrong_method_and_a_childs_own_error_speak_anthropic(server: CorralServer) -> None:
    key = {"x-api-key": "sekrit"}
    wrong = httpx.get(f"{server.url}/v1/messages", headers=key, timeout=10)
    assert wrong.status_code == 405 and anthropic_error(wrong)["type"] == "invalid_request_error"
    # The fake child has no count_tokens: its own 404, relayed in Anthropic's words.
    body = {"model": "chat", "messages": HI}
    count = f"{server.url}/v1/messages/count_tokens"
    relayed = httpx.post(count, json=body, headers=key, timeout=30)
    assert relayed.status_code == 404
    assert anthropic_error(relayed) == {"type": "not_found_error", "message": "404: Not Found"}


def test_a_child_that_dies_mid_stream_ends_it_with_anthropics_error_event(
    client: anthropic.Anthropic,
) -> None:
    with client.messages.stream(model="chat", max_tokens=8, messages=HI) as whole:
        assert "".join(whole.text_stream) == "chat: t1 t2 t3 t4"
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="crashy", max_tokens=8, messages=HI) as stream,
    ):
        list(stream.text_stream)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "stopped mid-answer" in body["error"]["message"]


def test_models_list_and_retrieve_have_anthropics_fields(client: anthropic.Anthropic) -> None:
    listed = {m.id: m for m in client.models.list().data}["chat"]
    assert listed.id == "chat" and listed.type == "model" and listed.display_name == "chat"
    assert listed.created_at.year >= 2024
    retrieved = client.models.retrieve("chat")
    assert retrieved.display_name == "chat" and retrieved.created_at == listed.created_at
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("nope")
