"""The client side of a peer (``http/peer_client.py``): what crosses the wire to it.

A recording server plays the peer behind a real corral A, so each test sees exactly which
request line and headers arrived, and what A's client got back: the path as the client
encoded it, no cookie kept from one answer to the next request, no redirect followed, a
compressed answer relayed readable, and a client's hang-up reaching the peer's generation.
"""

from __future__ import annotations

import errno
import gzip
import http.client
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from corral.supervisor.errors import UpstreamFailed
from corral.supervisor.http import peer_client
from tests.support import CorralServer, fake_cmd, free_port, http_server, wait_until


class Recorder(BaseHTTPRequestHandler):
    """A peer that records each request line and its headers, and answers one chat
    completion: gzipped when the path says ``gzip`` (whatever the request accepts), a 307
    when it says ``redirect``. Every answer sets a cookie."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "r"}}]})
        data = body.encode()
        if "redirect" in self.path:
            self.send_response(307)
            self.send_header("location", "/elsewhere")
            data = b""
        else:
            self.send_response(200)
            self.send_header("content-type", "application/json")
        if "gzip" in self.path:
            data = gzip.compress(data)
            self.send_header("content-encoding", "gzip")
        self.send_header("set-cookie", "peer-session=for-one-client; Path=/")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    with http_server(Recorder) as url:
        yield url


@pytest.fixture(scope="module")
def a(tmp_path_factory: pytest.TempPathFactory, recorder: str) -> Iterator[CorralServer]:
    config = {
        "models": [{"name": "local", "cmd": fake_cmd("local")}],
        "peers": {"r": {"url": recorder, "models": ["rec"]}},
    }
    with CorralServer(config, tmp_path_factory.mktemp("peer-client")) as server:
        yield server


BODY = json.dumps({"model": "rec", "messages": [{"role": "user", "content": "hi"}]})


def post_raw(server: CorralServer, path: str) -> tuple[int, bytes, dict[str, str]]:
    """POST ``BODY`` with ``path`` on the request line byte for byte (httpx would resolve
    dot segments before sending)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", path, BODY, {"content-type": "application/json"})
        answer = conn.getresponse()
        return answer.status, answer.read(), {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


def test_the_path_reaches_the_peer_as_the_client_encoded_it(a: CorralServer) -> None:
    path = "/v1/x/../chat%2Fcompletions?q=a%2Fb&r=%2e%2e"
    status, _, _ = post_raw(a, path)
    assert status == 200
    assert Recorder.seen[-1][":path"] == path


async def test_a_peers_base_path_comes_before_the_clients_path(recorder: str) -> None:
    async with peer_client.new_client() as peers:
        answer = await peer_client.send(
            peers, "POST", f"{recorder}/base", "/v1/a%2Fb", {}, BODY.encode(), "Bearer k"
        )
        await answer.read()
    assert Recorder.seen[-1][":path"] == "/base/v1/a%2Fb"
    assert Recorder.seen[-1]["authorization"] == "Bearer k"


def test_a_peers_cookie_never_reaches_the_next_request(a: CorralServer) -> None:
    """A proxy that kept cookies would hand one client's session to every other client."""
    for _ in range(2):
        status, _, headers = post_raw(a, "/v1/chat/completions")
        assert status == 200
        assert "peer-session" in headers.get("set-cookie", "")  # relayed to its client
    assert "cookie" not in Recorder.seen[-1]


def test_a_peers_redirect_goes_back_to_the_client(a: CorralServer) -> None:
    before = len(Recorder.seen)
    status, _, headers = post_raw(a, "/v1/redirect")
    assert status == 307 and headers["location"] == "/elsewhere"
    assert len(Recorder.seen) == before + 1  # not followed


def test_a_peer_that_compresses_anyway_reaches_the_client_readable(a: CorralServer) -> None:
    """The answer's content-encoding is not relayed (``headers``): its body must not be
    either. (aiohttp, asked not to decompress, relayed the gzip bytes as the JSON.)"""
    status, body, headers = post_raw(a, "/v1/chat/completions?gzip")
    assert status == 200 and "content-encoding" not in headers
    assert json.loads(body)["choices"][0]["message"]["content"] == "r"
    assert Recorder.seen[-1]["accept-encoding"] == "identity"


async def test_a_peer_that_refuses_the_connection_is_named_as_unreachable() -> None:
    async with peer_client.new_client() as peers:
        with pytest.raises(UpstreamFailed) as failed:
            await peer_client.send(
                peers, "POST", f"http://127.0.0.1:{free_port()}", "/v1/x", {}, b"{}", None
            )
    # httpx's own "All connection attempts failed" hides the refusal: its cause is named.
    assert failed.value.message.startswith("cannot reach it: ")
    assert f"[Errno {errno.ECONNREFUSED}]" in failed.value.message


def test_a_client_hanging_up_stops_the_peers_generation(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    slow = fake_cmd("slow", "--tokens", "200", "--token-delay", "0.05")
    b = CorralServer({"models": [{"name": "slow", "cmd": slow}]}, tmp_path / "b")
    peers = {"b": {"url": b.url, "models": ["slow"]}}
    local = [{"name": "local", "cmd": fake_cmd("local")}]
    a = CorralServer({"models": local, "peers": peers}, tmp_path / "a")
    with b, a:
        body = {"model": "slow", "prompt": "x", "stream": True}
        with httpx.stream("POST", f"{a.url}/v1/completions", json=body, timeout=30) as answer:
            assert answer.status_code == 200
            chunks = answer.iter_raw()
            next(chunks)
            next(chunks)
        # Leaving the block closed A's client connection mid-stream: A closes its own to B,
        # B its own to the child, which logs it.

        def child_saw_hangup() -> bool:
            logs = httpx.get(f"{b.url}/logs/slow", timeout=5).text
            return "disconnected POST /v1/completions" in logs

        wait_until(child_saw_hangup, 10, "B's child to see the hang-up through A")
        wait_until(lambda: b.running()[0]["in_flight"] == 0, 5, "B's lease to end")
