"""Request heads: a limit on their size, header count and URL length that holds, measured
in the service's memory. httptools has none: a 100 MB header block once took corral from
58 MB to 1.8 GB, before any API key was checked."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support import CorralServer, fake_cmd

CONFIG = {"api_keys": ["k"], "models": [{"name": "m", "cmd": fake_cmd("m")}]}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("headers")) as running:
        yield running


def rss(server: CorralServer) -> int:
    return int(psutil.Process(server.pid).memory_info().rss)


def send_until_answered(port: int, head: bytes, filler: bytes, most: int) -> tuple[bytes, int]:
    """Send ``head``, then ``filler`` until the server answers or ``most`` bytes are sent;
    the answer's first bytes and how many filler bytes went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            while sent < most and not select.select([sock], [], [], 0)[0]:
                sock.sendall(filler)
                sent += len(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return sock.recv(65536), sent
        except ConnectionResetError:
            return b"", sent


def test_refusals_under_api_speak_ollamas_shape(server: CorralServer) -> None:
    many = {f"X-H{i}": "v" for i in range(101)}
    for url, status in (("/api/tags", 431), ("/api/" + "a" * 9000, 414)):
        answer = httpx.get(server.url + url, headers=many if status == 431 else None)
        assert answer.status_code == status
        assert isinstance(answer.json()["error"], str), answer.text  # Ollama's clients read it
    openai_path = httpx.get(f"{server.url}/v1/models", headers=many)
    assert openai_path.status_code == 431
    assert openai_path.json()["error"]["type"] == "invalid_request_error"


def test_a_huge_header_block_is_431_and_memory_stays_put(server: CorralServer) -> None:
    before = rss(server)
    head = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: "
    answer, sent = send_until_answered(server.port, head, b"a" * MB, 100 * MB)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request head larger than 65536 bytes" in answer
    assert sent < 20 * MB, f"the server read {sent} bytes of a head before refusing"
    grown = rss(server) - before
    assert grown < 20 * MB, f"RSS grew by {grown / MB:.0f} MB"
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_many_small_header_lines_are_431(server: CorralServer) -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    head = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n" + lines + b"\r\n"
    answer, _ = send_until_answered(server.port, head, b"", 0)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"more than 100 request headers" in answer


def test_a_header_block_just_under_the_limits_passes(server: CorralServer) -> None:
    headers = {f"X-H{i}": "v" * 500 for i in range(90)}  # ~46 KB in 90 headers
    answer = httpx.get(f"{server.url}/v1/models", headers={**headers, "Authorization": "Bearer k"})
    assert answer.status_code == 200


def test_a_long_url_is_414_at_once(server: CorralServer) -> None:
    # 60 KB of slashes under /upstream/ once froze every client for 9 s.
    answer = httpx.get(f"{server.url}/upstream/m/" + "/" * 60_000, timeout=30)
    assert answer.status_code == 414
    assert "URL longer than 8192 bytes" in answer.json()["error"]["message"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_body_sent_with_its_head_is_not_counted_as_head(server: CorralServer) -> None:
    # One write of head + 512 KB body: the first read holds both; only the head is limited.
    body = b'{"model": "m", "prompt": "' + b"x" * (MB // 2) + b'"}'
    answer = httpx.post(
        f"{server.url}/v1/completions",
        content=body,
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]
