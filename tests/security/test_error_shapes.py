"""A hang-up during a load, and errors that escape every handler (issue 26, item 3).

The client that comes right after one that hung up gets its answer; no route answers
uvicorn's text/plain 500, whatever a route lets escape.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from corral.supervisor.app import EXCEPTION_HANDLERS, LastResort
from tests.support import CorralServer, fake_cmd, wait_until


def test_a_request_right_after_a_hang_up_during_the_load_gets_its_answer(
    tmp_path: Path,
) -> None:
    # A child that ignores SIGTERM: the cancelled load takes its 10 s of grace to stop, and
    # the next request comes in while it does (the 0-3 ms, held open).
    cmd = fake_cmd("m", "--load-seconds", "5", "--ignore-sigterm")
    with CorralServer({"models": [{"name": "m", "cmd": cmd}]}, tmp_path) as server:
        body = json.dumps({"model": "m", "prompt": "x"}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as first:
            head = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            first.sendall(head + body)
            # Once it ignores SIGTERM: before that, the stop would kill it at once.
            wait_until(
                lambda: "ignoring SIGTERM" in httpx.get(f"{server.url}/logs/m").text,
                30,
                "the child to be loading",
            )
            # A reset, as the client did (SO_LINGER 0).
            first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: "client hung up before the answer" in server.log(), 10, "the hang-up")
        answer = httpx.post(
            f"{server.url}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=60
        )
        assert answer.status_code == 200, (answer.status_code, answer.text, server.log())
        assert answer.json()["upstream"] == "m"
        assert "Exception in ASGI application" not in server.log()


async def _escapes(request: Request) -> Response:
    raise asyncio.CancelledError  # not this request's own cancellation: a bug's


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/v1/escapes", {"message": "internal error: CancelledError", "type": "server_error"}),
        ("/api/escapes", "internal error: CancelledError"),
    ],
)
async def test_what_escapes_every_handler_is_a_500_in_the_routes_shape(
    path: str, error: object
) -> None:
    app = Starlette(
        routes=[Route(p, _escapes) for p in ("/v1/escapes", "/api/escapes")],
        middleware=[Middleware(LastResort)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.get(path)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    found = answer.json()["error"]
    if isinstance(error, dict):
        assert {k: found[k] for k in error} == error
    else:
        assert found == error
