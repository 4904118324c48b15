"""The HTTP surface against fake upstreams: routing, errors, defaults, passthrough, keys."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from corral.supervisor.api.openai import MODEL_ROUTED
from corral.supervisor.http.defaults import GENERATE_PATHS
from tests import support
from tests.gguf_files import write_gguf
from tests.support import CorralServer, fake_cmd

CONFIG = {
    "default_ttl": 0,
    "api_keys": ["sekrit"],
    "models": [
        {
            "name": "org/chat:q4",
            "aliases": ["chat"],
            "cmd": fake_cmd("chat"),
            "parameters": {"temperature": 0.2, "top_k": 5},
            "system_prompt": "Be brief.",
        },
        {"name": "hidden", "cmd": fake_cmd("hidden"), "unlisted": True},
    ],
}
AUTH = {"Authorization": "Bearer sekrit"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("routes")) as running:
        yield running


def post(server: CorralServer, path: str, body: object) -> httpx.Response:
    return support.post(server, path, body, headers=AUTH)


def test_routes_by_name_and_alias_and_applies_defaults_only_where_unset(
    server: CorralServer,
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    first = post(server, "/v1/chat/completions", {"model": "chat", "messages": messages})
    assert first.status_code == 200, first.text
    received = first.json()["received"]
    assert received["temperature"] == 0.2 and received["top_k"] == 5
    assert received["messages"][0] == {"role": "system", "content": "Be brief."}

    own = [{"role": "system", "content": "Mine."}, *messages]
    second = post(
        server,
        "/v1/chat/completions",
        {"model": "org/chat:q4", "messages": own, "temperature": 1.5},
    )
    got = second.json()["received"]
    assert got["temperature"] == 1.5, "the client's value must win"
    assert got["messages"] == own, "no second system prompt when the client sent one"


@pytest.mark.parametrize(
    "path", ["/v1/completions", "/completion", "/v1/embeddings", "/infill", "/v1/responses"]
)
def test_every_model_routed_endpoint_reaches_the_child(server: CorralServer, path: str) -> None:
    answer = post(server, path, {"model": "chat", "prompt": "x", "input": "x"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["upstream"] == "chat"


def test_unknown_model_404_lists_listed_names_only(server: CorralServer) -> None:
    answer = post(server, "/v1/chat/completions", {"model": "nope", "messages": []})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert "'nope'" in error["message"] and "org/chat:q4" in error["message"]
    assert "hidden" not in error["message"]
    assert error["type"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": []}', "missing `model`"),
    ],
)
def test_bad_bodies_are_400_in_the_openai_shape(
    server: CorralServer, body: bytes, expected: str
) -> None:
    answer = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers=AUTH, timeout=10)
    assert answer.status_code == 400
    assert expected in answer.json()["error"]["message"]


def test_model_list_shows_state_and_hides_unlisted(server: CorralServer) -> None:
    post(server, "/v1/completions", {"model": "chat", "prompt": "x"})
    listed = httpx.get(f"{server.url}/v1/models", headers=AUTH).json()
    assert [m["id"] for m in listed["data"]] == ["org/chat:q4"]
    assert listed["data"][0]["state"] == "ready"
    assert listed["data"][0]["aliases"] == ["chat"]


def test_upstream_passthrough_finds_names_with_slashes(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/upstream/org/chat:q4/v1/models", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["data"][0]["id"] == "chat"
    missing = httpx.get(f"{server.url}/upstream/ghost/health", headers=AUTH)
    assert missing.status_code == 404


def test_api_keys_bearer_header_basic_and_open_health(server: CorralServer) -> None:
    url = f"{server.url}/v1/models"
    denied = httpx.get(url)
    assert denied.status_code == 401
    assert denied.json()["error"]["type"] == "authentication_error"
    assert "org/chat" not in denied.text
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"x-api-key": "sekrit"}).status_code == 200
    assert httpx.get(url, auth=("anyone", "sekrit")).status_code == 200
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert "sekrit" not in server.log()


def test_unload_stops_the_child(server: CorralServer) -> None:
    post(server, "/v1/completions", {"model": "chat", "prompt": "x"})
    assert server.children()
    unloaded = httpx.post(f"{server.url}/unload/chat", headers=AUTH).json()
    assert unloaded == {"unloaded": ["org/chat:q4"]}
    assert server.children() == []
    assert "reason=unload" in server.log()


def test_unknown_route_is_404_in_the_openai_shape(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/v2/nothing", headers=AUTH)
    assert answer.status_code == 404
    assert "no route" in answer.json()["error"]["message"]


def test_a_relayed_answer_has_one_date_and_no_server_of_corrals_own(server: CorralServer) -> None:
    answer = post(server, "/v1/completions", {"model": "chat", "prompt": "x"})
    assert len(answer.headers.get_list("date")) == 1
    assert len(answer.headers.get_list("server")) <= 1  # the child's, relayed
    health = httpx.get(f"{server.url}/health")
    assert "server" not in health.headers


def test_every_path_with_defaults_is_a_routed_one() -> None:
    """Defaults for a path no route serves would be dead entries."""
    assert set(MODEL_ROUTED) >= GENERATE_PATHS


def test_curl_with_expect_100_continue_gets_the_childs_answer(server: CorralServer) -> None:
    """curl sends ``Expect: 100-continue`` for large bodies (and when told): corral answers
    the 100 itself, and the child, which gets the whole body at once, never sees it."""
    body = json.dumps({"model": "chat", "prompt": "x" * 4096})
    argv = ["curl", "-sS", "-H", "Expect: 100-continue", "-H", "Authorization: Bearer sekrit"]
    argv += ["-H", "Content-Type: application/json", "-d", body, "-w", "\\n%{http_code}"]
    done = subprocess.run(
        [*argv, f"{server.url}/v1/completions"], capture_output=True, text=True, timeout=30
    )
    answer, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stdout + done.stderr
    assert json.loads(answer)["received"]["prompt"] == "x" * 4096


def test_model_list_has_llama_servers_meta_from_the_gguf_header(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "tiny.gguf", context_length=4096)
    models = [
        {"name": "tiny", "path": str(gguf), "context_size": 1024, "cmd": fake_cmd("tiny")},
        {"name": "remote", "cmd": fake_cmd("remote")},
    ]
    with (
        CorralServer({"models": models}, tmp_path) as running,
        openai.OpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0) as client,
    ):
        listed = {m.id: m.model_dump() for m in client.models.list()}
        # As llama-server's own /v1/models reads them, before anything loads.
        assert listed["tiny"]["meta"] == {
            "vocab_type": 1,
            "n_vocab": 1000,
            "n_ctx": 1024,
            "n_ctx_train": 4096,
            "n_embd": 64,
            "n_params": 30,
            "size": 120,
            "ftype": "Q4_K - Medium",
        }
        assert listed["remote"]["meta"] is None  # a cmd model has no file to read
        assert client.models.retrieve("tiny").model_dump()["meta"] == listed["tiny"]["meta"]
        assert running.running() == []
