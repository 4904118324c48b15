"""Peers: corral A passes requests for corral B's models to B, with B's key, and lists them.

Two real corrals on loopback (each with a fake upstream), plus a header-recording server
that plays a third peer, so a test can see exactly which key crossed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import ollama
import openai
import pytest

from corral.generator.loader import validate
from corral.supervisor.http.peers.router import decide
from corral.supervisor.http.peers.table import PeerTable
from tests.support import CorralServer, fake_cmd, http_server, wait_until

A_KEY, B_KEY, C_KEY = "key-for-a", "key-for-b", "key-for-c"


class Recorder(BaseHTTPRequestHandler):
    """A peer that records the headers it gets and answers one chat completion."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "c"}}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    with http_server(Recorder) as url:
        yield url


def key_file(tmp: Path, name: str, key: str) -> str:
    path = tmp / name
    path.write_text(f"{key}\n", encoding="utf-8")
    return str(path)


def start_pair(tmp: Path, recorder: str) -> tuple[CorralServer, CorralServer]:
    b = CorralServer(
        {"api_keys": [B_KEY], "models": [{"name": "big", "cmd": fake_cmd("big")}]}, tmp / "b"
    )
    peers = {
        "b": {
            "url": b.url,
            "api_key_file": key_file(tmp, "b.key", B_KEY),
            "models": [{"name": "big", "aliases": ["b-big"]}],
        },
        "c": {"url": recorder, "api_key_file": key_file(tmp, "c.key", C_KEY), "models": ["cee"]},
    }
    a_config = {"api_keys": [A_KEY], "models": [{"name": "small", "cmd": fake_cmd("small")}]}
    a = CorralServer({**a_config, "peers": peers}, tmp / "a")
    return a, b


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, recorder: str
) -> Iterator[tuple[CorralServer, CorralServer]]:
    tmp = tmp_path_factory.mktemp("peers")
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    a, b = start_pair(tmp, recorder)
    with b, a:
        yield a, b


def client(server: CorralServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=A_KEY, max_retries=0, timeout=30)


def chat(server: CorralServer, model: str, path: str = "/v1/chat/completions") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    headers = {"Authorization": f"Bearer {A_KEY}"}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def test_the_openai_client_gets_the_peers_model_whole_and_streamed(
    pair: tuple[CorralServer, CorralServer],
) -> None:
    a, _ = pair
    messages: Any = [{"role": "user", "content": "hi"}]
    with client(a) as api:
        answer = api.chat.completions.create(model="big", messages=messages)
        assert "big" in (answer.choices[0].message.content or "")
        # An alias is A's: B gets the name it knows.
        chunks = list(api.chat.completions.create(model="b-big", messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "big" in text and len(chunks) > 2
    received = chat(a, "b-big").json()["received"]
    assert received["model"] == "big"


def test_the_ollama_client_gets_the_peers_model(pair: tuple[CorralServer, CorralServer]) -> None:
    a, _ = pair
    headers = {"Authorization": f"Bearer {A_KEY}"}
    with ollama.Client(host=a.url, headers=headers, timeout=30) as api:
        messages = [{"role": "user", "content": "hi"}]
        parts = list(api.chat(model="big", messages=messages, stream=True))
        whole = api.generate(model="b-big", prompt="hi", stream=False)
    assert parts[-1].done and "big" in "".join(p.message.content or "" for p in parts)
    assert "big" in whole.response


def test_the_ollama_client_gets_an_openai_only_peers_model_translated(
    pair: tuple[CorralServer, CorralServer],
) -> None:
    """Peer c speaks only OpenAI's API: A's one exchange path translates Ollama's request
    to it and its answer back, with c's key."""
    a, _ = pair
    headers = {"Authorization": f"Bearer {A_KEY}"}
    with ollama.Client(host=a.url, headers=headers, timeout=30) as api:
        answer = api.chat(model="cee", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert answer.message.content == "c" and answer.done
    seen = Recorder.seen[-1]
    assert seen[":path"] == "/v1/chat/completions"
    assert seen["authorization"] == f"Bearer {C_KEY}"


def test_lists_merge_the_peers_models_and_say_where_each_runs(
    pair: tuple[CorralServer, CorralServer],
) -> None:
    a, _ = pair
    headers = {"Authorization": f"Bearer {A_KEY}"}
    with client(a) as api:
        models = {m.id: m for m in api.models.list()}
    assert models["small"].owned_by == "corral"
    assert models["big"].owned_by == "peer:b" and models["cee"].owned_by == "peer:c"
    tags = httpx.get(f"{a.url}/api/tags", headers=headers).json()["models"]
    assert {(t["name"], t.get("peer")) for t in tags} == {
        ("small", None),
        ("big", "b"),
        ("cee", "c"),
    }
    assert chat(a, "big").status_code == 200
    running = httpx.get(f"{a.url}/running", headers=headers).json()["running"]
    assert {"model": "big", "peer": "b"}.items() <= next(
        r for r in running if r["model"] == "big"
    ).items()


def test_keys_never_cross_to_the_wrong_peer(pair: tuple[CorralServer, CorralServer]) -> None:
    a, _ = pair
    Recorder.seen.clear()
    assert chat(a, "cee").status_code == 200
    headers = {"x-api-key": A_KEY, "cookie": "session=for-a"}
    body = {"model": "cee", "messages": []}
    assert httpx.post(f"{a.url}/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert [h["authorization"] for h in Recorder.seen] == [f"Bearer {C_KEY}"] * 2
    for seen in Recorder.seen:
        assert A_KEY not in json.dumps(seen) and B_KEY not in json.dumps(seen)
        assert "cookie" not in seen and "x-api-key" not in seen
    # B accepts only its own key: A's answer from B shows that B's key crossed to B.
    assert chat(a, "big").status_code == 200


def test_a_peers_model_needs_this_corrals_key(pair: tuple[CorralServer, CorralServer]) -> None:
    a, _ = pair
    body = {"model": "big", "messages": []}
    for key in (None, B_KEY):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = httpx.post(f"{a.url}/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 401


def test_a_down_peer_is_a_clean_502_and_comes_back_without_restarting_a(
    tmp_path: Path, recorder: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = start_pair(tmp_path, recorder)
    with b, a:
        assert chat(a, "big").status_code == 200
        b.stop()
        down = chat(a, "big")
        assert down.status_code == 502
        error = down.json()["error"]
        assert error["type"] == "upstream_error"
        assert "peer 'b'" in error["message"] and b.url in error["message"]
        ollama_down = chat(a, "big", "/api/chat")
        assert ollama_down.status_code == 502
        assert "peer 'b'" in ollama_down.json()["error"]
        # A's own models, and its lists, are unaffected.
        assert chat(a, "small").status_code == 200
        listed = httpx.get(f"{a.url}/v1/models", headers={"x-api-key": A_KEY}).json()["data"]
        assert "big" in {m["id"] for m in listed}
        b.start()  # the same port
        wait_until(lambda: chat(a, "big").status_code == 200, 30, "A to reach B again")
        assert a.proc is not None and a.proc.poll() is None


# -- the decision, without servers ----------------------------------------------------------


TABLE = PeerTable.from_config(
    validate(
        {
            "models": [{"name": "local", "cmd": ["x", "{port}"]}],
            "peers": {"b": {"url": "http://b", "models": [{"name": "org/big", "aliases": ["bb"]}]}},
        }
    )
)


@pytest.mark.parametrize(
    ("body", "peer", "sent_model"),
    [
        (b'{"model": "org/big"}', "b", "org/big"),
        (b'{"model": "org\\/big"}', "b", "org/big"),
        (b'{"model": "bb", "stream": true}', "b", "org/big"),
        (b'{"name": "bb"}', "b", "org/big"),
        (b'{"model": "local"}', None, None),
        (b'{"model": "local", "note": "bb"}', None, None),
        (b"not json bb", None, None),
        (b'["bb"]', None, None),
    ],
)
def test_decide(body: bytes, peer: str | None, sent_model: str | None) -> None:
    route, sent = decide(TABLE, body)
    assert (route.peer.name if route else None) == peer
    if route is None:
        assert sent == body  # untouched for the local routes
    else:
        payload = json.loads(sent)
        assert payload.get("model", payload.get("name")) == sent_model


def test_an_unreadable_key_file_fails_only_that_peer(tmp_path: Path) -> None:
    config = validate(
        {
            "peers": {
                "gone": {
                    "url": "http://x",
                    "api_key_file": str(tmp_path / "nope"),
                    "models": ["g"],
                },
                "fine": {"url": "http://y", "models": ["f"]},
            }
        }
    )
    table = PeerTable.from_config(config)
    assert table.peers["gone"].key_error is not None
    assert "peers.gone.api_key_file" in table.peers["gone"].key_error
    assert table.peers["fine"].key_error is None and table.peers["fine"].authorization is None
