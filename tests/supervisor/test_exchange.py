"""The one exchange path, seen from clients of a real corral: every route gives its place
back when the client hangs up, and every Ollama route answers errors in Ollama's shape."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import CorralServer, fake_cmd, wait_until

KEY = {"Authorization": "Bearer sekrit"}
CONFIG = {
    "default_ttl": 0,
    "api_keys": ["sekrit"],
    "groups": {"all": {"members": ["hung", "quick"], "swap": False}},
    "models": [
        {"name": "hung", "cmd": fake_cmd("hung", "--hang")},
        {"name": "quick", "cmd": fake_cmd("quick")},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("exchange")) as running:
        yield running


def in_flight(server: CorralServer, model: str) -> int | None:
    answer = httpx.get(f"{server.url}/running", headers=KEY, timeout=5).json()["running"]
    return next((m["in_flight"] for m in answer if m["model"] == model), None)


BODIES: dict[str, dict[str, object]] = {
    "/v1/completions": {"model": "hung", "prompt": "x"},
    "/api/generate": {"model": "hung", "prompt": "x"},
    "/api/chat": {"model": "hung", "messages": [{"role": "user", "content": "x"}]},
}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("path", list(BODIES))
def test_a_client_that_hangs_up_gives_its_place_back(
    server: CorralServer, path: str, stream: bool
) -> None:
    """The child never answers; the client gives up. Its place must not be kept."""
    body = {**BODIES[path], "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}{path}", json=body, headers=KEY, timeout=1.5)
    wait_until(lambda: in_flight(server, "hung") == 0, 5, f"{path}'s place to be given back")


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_ollama_requests_may_name_the_model_with_name(server: CorralServer, path: str) -> None:
    body = {"name": "quick", "stream": False, "prompt": "x"}
    body["messages"] = [{"role": "user", "content": "x"}]
    answer = httpx.post(f"{server.url}{path}", json=body, headers=KEY, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "quick"


def test_an_unknown_ollama_route_is_a_404_in_ollamas_shape(server: CorralServer) -> None:
    answer = httpx.post(f"{server.url}/api/no-such-route", json={"model": "x"}, headers=KEY)
    assert answer.status_code == 404
    assert answer.json() == {"error": "no route POST /api/no-such-route"}


def test_a_wrong_method_on_an_ollama_route_is_a_405_in_ollamas_shape(
    server: CorralServer,
) -> None:
    answer = httpx.get(f"{server.url}/api/chat", headers=KEY)
    assert answer.status_code == 405
    assert answer.json() == {"error": "GET is not allowed on /api/chat"}


@pytest.mark.parametrize("path", ["/api/tags", "/api/chat", "/api/nothing"])
def test_a_missing_key_on_an_ollama_route_is_a_401_in_ollamas_shape(
    server: CorralServer, path: str
) -> None:
    answer = httpx.post(f"{server.url}{path}", json={})
    assert answer.status_code == 401
    (message,) = answer.json().values()
    assert list(answer.json()) == ["error"] and "API key" in message


def test_openai_routes_keep_the_openai_shape(server: CorralServer) -> None:
    assert httpx.get(f"{server.url}/v1/nothing").json()["error"]["type"] == "authentication_error"
    answer = httpx.get(f"{server.url}/v1/nothing", headers=KEY)
    assert answer.json()["error"]["type"] == "not_found_error"
