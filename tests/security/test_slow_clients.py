"""Slow clients: a body sent a byte at a time, heads that never end, sockets that say nothing.

Each must lose its place within its deadline, and the service must keep its file descriptors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from corral.supervisor.http.connections import MAX_LINGERING
from corral.supervisor.server import OutOfFiles
from tests.support import CorralServer, fake_cmd, read_response, wait_until

CONFIG = {
    "client_timeout": 2,
    "header_timeout": 1,
    "max_connections": 20,
    "models": [{"name": "m", "cmd": fake_cmd("m")}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("slow")) as running:
        yield running


def readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if readable(sock, deadline - time.monotonic()):
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionError:
                return True
    return False


def test_client_timeout_bounds_the_whole_body_not_each_chunk(server: CorralServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
        )
        started = time.monotonic()
        sent = 0
        # One byte every 1.5 s: each under client_timeout (2 s), the whole far over it.
        while sent < 20 and not readable(sock, 1.5):
            sock.sendall(b" ")
            sent += 1
        ended = time.monotonic() - started
        reply = read_response(sock)
    assert reply.startswith("HTTP/1.1 408 "), reply
    body = json.loads(reply.split("\r\n\r\n", 1)[1])
    assert "client_timeout (2 s)" in body["error"]["message"]
    assert sent < 5 and ended < 6, (sent, ended)


def test_a_socket_that_sends_nothing_is_closed_after_header_timeout(server: CorralServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert closed_by_server(sock, 6), "an idle new connection was never closed"


def test_a_head_sent_a_byte_at_a_time_is_closed_after_header_timeout(
    server: CorralServer,
) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        for byte in head:
            # Each byte well within header_timeout (1 s), the whole head far beyond it.
            if readable(sock, 0.3):
                break
            sock.sendall(bytes([byte]))
        assert closed_by_server(sock, 6), "a head that never ends was never closed"
        assert time.monotonic() - started < 10


def open_files(server: CorralServer) -> int:
    return int(psutil.Process(server.pid).num_fds())


def test_connections_past_max_connections_are_refused_and_files_stay_bounded(
    server: CorralServer,
) -> None:
    before = open_files(server)
    socks: list[socket.socket] = []
    with contextlib.ExitStack() as stack:
        for _ in range(200):  # slowloris: connect, say nothing
            socks.append(stack.enter_context(socket.create_connection(("127.0.0.1", server.port))))
        wait_until(lambda: open_files(server) >= before + 20, 10, "corral to accept them")
        refused = httpx.get(f"{server.url}/health", timeout=10)
        # Counted once the refusal came back: every socket before it has been handled by then,
        # while the count just after the first accepts catches a burst half processed.
        held = open_files(server) - before
        assert refused.status_code == 503
        assert "max_connections" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        # 20 admitted, at most MAX_LINGERING refused ones lingering; not one per socket.
        assert held <= 20 + MAX_LINGERING + 10, held
        # header_timeout (1 s) closes the silent ones, and the service is usable again.
        wait_until(
            lambda: httpx.get(f"{server.url}/health", timeout=10).status_code == 200,
            15,
            "the silent sockets to be closed",
        )


def test_a_failed_accept_is_logged_once_a_minute_without_a_traceback() -> None:
    records = []
    for _ in range(1000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            records.append(
                logging.LogRecord(
                    "asyncio", logging.ERROR, __file__, 1,
                    "socket.accept() out of system resource\nsocket: <x>", (), sys.exc_info(),
                )
            )  # fmt: skip
    only = OutOfFiles()
    kept = [r for r in records if only.filter(r)]
    assert len(kept) == 1
    assert kept[0].exc_info is None
    assert "Too many open files" in kept[0].getMessage()
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task was destroyed", (), None)
    assert only.filter(other)


def test_the_file_limit_is_raised_to_what_max_connections_needs() -> None:
    script = (
        "import resource; from corral.generator.settings import Config; "
        "from corral.supervisor.server import raise_file_limit; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)); "
        "raise_file_limit(Config(max_connections=1024)); "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == [str(2 * 1024 + 512)]
