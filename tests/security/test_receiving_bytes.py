"""Bodies being received, counted together (issue 26, item 4): past ``max_receiving_bytes``
a new one gets 503 with Retry-After, before corral holds any of it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import CorralServer, fake_cmd, read_response, wait_until

CONFIG = {
    "max_receiving_bytes": "1MiB",
    "client_timeout": 30,
    "models": [{"name": "m", "cmd": fake_cmd("m")}],
}
HEAD = (
    b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("receiving")) as running:
        yield running


def test_a_body_past_what_all_bodies_may_hold_is_503_then_served_once_room(
    server: CorralServer,
) -> None:
    body = json.dumps({"model": "m", "prompt": "x" * 600_000}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as first:
        first.sendall(HEAD % len(body) + body[:1000])  # 600 kB declared, held open
        # Sent with its whole body: refused on what it declares, read or not.
        refused = httpx.post(
            f"{server.url}/v1/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        message = refused.json()["error"]["message"]
        assert "max_receiving_bytes" in message and str(2**20) in message
        first.sendall(body[1000:])
        assert read_response(first).startswith("HTTP/1.1 200 ")
    # Once the first is in, there is room again.
    again = httpx.post(
        f"{server.url}/v1/completions", content=body, headers={"content-type": "application/json"}
    )
    assert again.status_code == 200, again.text


def test_a_chunked_body_is_counted_as_it_comes(server: CorralServer) -> None:
    body = json.dumps({"model": "m", "prompt": "x" * 600_000}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as first:
        first.sendall(HEAD % len(body) + body[:1000])

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536]

        refused = httpx.post(
            f"{server.url}/v1/completions",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert refused.status_code == 503, refused.text
        assert "max_receiving_bytes" in refused.json()["error"]["message"]


def test_memory_comes_back_after_a_burst_of_large_bodies(tmp_path: Path) -> None:
    """glibc kept freed bodies in the heap (its mmap threshold rises with each large block
    freed): 520 MB stayed of a 64 MB corral after 80 bodies of 8 MB. See
    ``server.give_back_large_blocks``."""
    body = json.dumps({"model": "m", "prompt": "x" * 8_000_000}).encode()
    headers = {"content-type": "application/json"}

    async def burst(url: str) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            # While the model loads: bodies are held, freed and held again, interleaved.
            sent = [client.post(url, content=body, headers=headers) for _ in range(40)]
            await asyncio.gather(*sent)

    config = {"models": [{"name": "m", "cmd": fake_cmd("m", "--load-seconds", "2")}]}
    with CorralServer(config, tmp_path) as server:
        process = psutil.Process(server.pid)
        base = process.memory_info().rss
        asyncio.run(burst(f"{server.url}/v1/completions"))
        wait_until(
            lambda: process.memory_info().rss < base + 32 * 2**20,
            15,
            f"corral's memory to come back near {base >> 20} MiB after the burst",
        )
