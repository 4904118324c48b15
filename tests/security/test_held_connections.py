"""Connections held past their answer (issue 26, items 1 and 5): one body byte after a 401,
line breaks between requests, and a client that never reads its stream.

Each must lose its connection within its deadline, whatever it sends, and its place with it.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import CorralServer, fake_cmd, read_response, wait_until

KEY = "k"
CONFIG = {
    "api_keys": [KEY],
    "client_timeout": 2,
    "header_timeout": 1,
    # One member of the group runs at a time: b's load waits for a's requests to finish.
    "max_swap_wait": 0,
    "groups": {"one": {"members": ["a", "b"], "swap": True}},
    "models": [
        # A long answer (about 9 MB): more than every buffer between the child and a client
        # that reads nothing.
        {"name": "a", "cmd": fake_cmd("a", "--tokens", "50000")},
        {"name": "b", "cmd": fake_cmd("b")},
    ],
}
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("held")) as running:
        yield running


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout`` seconds; what
    it sends meanwhile is read and dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionError:
                return True
    return False


def test_one_body_byte_after_the_answer_does_not_hold_the_connection(
    server: CorralServer,
) -> None:
    socks = []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(sock)
            # A body the route never reads: the 401 goes out at once.
            sock.sendall(
                b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
            )
            assert read_response(sock).startswith("HTTP/1.1 401 ")
            sock.sendall(b"x")  # then one byte of the body, and silence
        for sock in socks:
            # header_timeout is 1 s; uvicorn's keep-alive timer is cancelled by the byte.
            assert closed_by_server(sock, 8), "a connection with a pending body stayed open"
    finally:
        for sock in socks:
            sock.close()


def test_line_breaks_between_requests_do_not_hold_the_connection(server: CorralServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock).startswith("HTTP/1.1 200 ")
        started = time.monotonic()
        # The parser skips CRLFs before a request line without starting one, and each
        # cancels uvicorn's keep-alive timer: a byte pair every 0.3 s held it forever.
        while time.monotonic() - started < 10:
            if closed_by_server(sock, 0.3):
                break
            try:
                sock.sendall(b"\r\n")
            except ConnectionError:
                break
        assert time.monotonic() - started < 8, "CRLFs alone kept the connection open"


def test_a_client_that_reads_nothing_loses_its_place_and_another_model_is_served(
    server: CorralServer,
) -> None:
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: the window
    try:
        stalled.connect(("127.0.0.1", server.port))
        body = json.dumps({"model": "a", "prompt": "x", "stream": True}).encode()
        stalled.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        wait_until(lambda: any(m["model"] == "a" for m in server_running(server)), 30, "a to serve")
        # b swaps a out once a's requests end: the stalled one must be dropped for that.
        other = httpx.post(
            f"{server.url}/v1/completions",
            json={"model": "b", "prompt": "x"},
            headers=AUTH,
            timeout=40,
        )
        assert other.status_code == 200, other.text
        assert other.json()["upstream"] == "b"
        log = server.log()
        assert "read nothing of its answer for client_timeout (2 s)" in log, log
        assert "request cancelled: model a: client hung up mid-answer" in log, log
    finally:
        stalled.close()


def server_running(server: CorralServer) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = httpx.get(
        f"{server.url}/running", headers=AUTH, timeout=5
    ).json()["running"]
    return answer
