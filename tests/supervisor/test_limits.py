"""The service's own limits: body size, slow clients, requests at once. Each answers in the
OpenAI error shape and the service keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support import CorralServer, fake_cmd, read_response

CONFIG = {
    "max_body_bytes": 2000,
    "client_timeout": 1,
    "max_connections": 2,
    "models": [{"name": "m", "cmd": fake_cmd("m", "--tokens", "6", "--token-delay", "0.1")}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("limits")) as running:
        yield running


def ok(server: CorralServer) -> bool:
    body = {"model": "m", "prompt": "x"}
    return httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).status_code == 200


def test_a_declared_large_body_is_413(server: CorralServer) -> None:
    body = {"model": "m", "prompt": "x" * 5000}
    answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=10)
    assert answer.status_code == 413
    assert "max_body_bytes (2000 bytes)" in answer.json()["error"]["message"]
    assert ok(server)


def test_a_chunked_body_that_grows_too_large_is_413(server: CorralServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "m", "prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    answer = httpx.post(f"{server.url}/v1/completions", content=chunks(), timeout=10)
    assert answer.status_code == 413
    assert ok(server)


def test_a_client_that_stops_sending_its_body_gets_408(server: CorralServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": "m"'
        )
        reply = read_response(sock)
    status, _, rest = reply.partition("\r\n")
    assert " 408 " in status, reply
    body = json.loads(rest.split("\r\n\r\n", 1)[1])
    assert "client_timeout (1 s)" in body["error"]["message"]
    assert ok(server)


def test_requests_over_max_connections_get_503(server: CorralServer) -> None:
    async def four() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"model": "m", "prompt": "x"}
            url = f"{server.url}/v1/completions"
            return await asyncio.gather(*(client.post(url, json=body) for _ in range(4)))

    answers = asyncio.run(four())
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 2 and 503 in codes, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert "max_connections" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    assert ok(server)
