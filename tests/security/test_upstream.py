"""/upstream/<model>/<path>: linear in the path's length, and read-only unless allowed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.supervisor.api.upstream import candidates
from corral.supervisor.http import client_pool
from corral.supervisor.http.headers import request_head
from tests.support import CorralServer, fake_cmd, wait_until

CONFIG = {
    "models": [
        {"name": "m", "cmd": fake_cmd("m")},
        {"name": "org/model:q4", "cmd": fake_cmd("q")},
    ]
}


def test_splits_are_bounded_by_the_deepest_known_name() -> None:
    assert candidates("org/model:q4/v1/models", 2) == [
        ("org/model:q4", "/v1/models"),
        ("org", "/model:q4/v1/models"),
    ]
    assert candidates("org%2Fmodel:q4/a%20b", 2) == [
        ("org/model:q4/a b", "/"),
        ("org/model:q4", "/a%20b"),
    ]
    assert candidates("m", 2) == [("m", "/")]
    # 30,000 slashes: every split was tried (quadratic), now two are.
    assert len(candidates("/" * 30_000, 2)) == 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("upstream")) as running:
        yield running


def test_reads_and_inference_pass(server: CorralServer) -> None:
    assert httpx.get(f"{server.url}/upstream/org/model:q4/health").status_code == 200
    body = {"messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{server.url}/upstream/m/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["upstream"] == "m"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/lora-adapters"),
        ("POST", "/slots/0?action=save"),
        ("POST", "/props"),
        ("DELETE", "/slots/0"),
        ("POST", "/completion/../lora-adapters"),
    ],
)
def test_writes_are_403_by_default(server: CorralServer, method: str, path: str) -> None:
    answer = httpx.request(method, f"{server.url}/upstream/m{path}", json={}, timeout=30)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["type"] == "permission_error"
    assert "upstream_writes" in error["message"]


def test_upstream_writes_true_lets_them_through(tmp_path: Path) -> None:
    with CorralServer({**CONFIG, "upstream_writes": True}, tmp_path) as server:
        answer = httpx.post(f"{server.url}/upstream/m/lora-adapters", json=[], timeout=30)
    # The fake child has no such route: its own 404, relayed, proves the request reached it.
    assert answer.status_code == 404
    assert "aiohttp" in answer.headers["server"]


# Issue 26, item 6: what a child sends that it was not asked for, and a child that says nothing.


async def test_a_second_answer_after_the_declared_length_adds_no_header() -> None:
    closed = asyncio.Event()

    async def child(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                b"HTTP/1.1 302 Found\r\nSet-Cookie: s=1\r\nLocation: http://evil\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()
            await reader.read()  # until corral closes
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            closed.set()

    server = await asyncio.start_server(child, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = client_pool.Pool()
    answer = None
    try:
        answer = await pool.request("GET", port, request_head("GET", "/", port, [], 0), b"")
        assert answer.status == 200
        assert await answer.read() == b"ok"
        names = [name for name, _ in answer.headers]
        assert b"set-cookie" not in names and b"location" not in names, answer.headers
        answer.release()
        assert pool.idle_ports() == [], "a connection out of step must never be reused"
    finally:
        if answer is not None:
            answer.close()  # the child's handler waits for it
        pool.close()
        await asyncio.wait_for(closed.wait(), 10)  # the handler's socket too, on this loop
        server.close()
        await server.wait_closed()


def test_a_child_that_never_answers_is_a_504_after_upstream_timeout(tmp_path: Path) -> None:
    config = {"upstream_timeout": 1, "models": [{"name": "m", "cmd": fake_cmd("m", "--hang")}]}
    with CorralServer(config, tmp_path) as server:
        answer = httpx.post(
            f"{server.url}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=30
        )
        assert answer.status_code == 504, answer.text
        error = answer.json()["error"]
        assert error["type"] == "upstream_timeout"
        assert "sent nothing for 1 s (upstream_timeout)" in error["message"]
        # The connection was closed: the child saw the hang-up (llama-server would stop).
        wait_until(
            lambda: (
                "disconnected POST /v1/completions after 0 chunks"
                in httpx.get(f"{server.url}/logs/m").text
            ),
            10,
            "the child to see its request dropped",
        )
