"""Request values that the fuzzing found to break corral, each pinned by a failing test.

Each is strict-xfail: when the fix lands the test passes, pytest reports it, and the mark
comes off. Meanwhile the fuzzing leaves out the values that fail at once (integers beyond a
float, deep nesting), so that it keeps finding new failures instead of these; the two
keep_alive values that poison a listing are cleared by an unload before its final check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import CorralServer, fake_cmd


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CorralServer]:
    with CorralServer({"models": [{"name": "m", "cmd": fake_cmd("m")}]}, tmp_path) as s:
        yield s


def post(server: CorralServer, path: str, content: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["/v1/completions", "/api/generate"])
def test_a_keep_alive_beyond_a_float_is_a_400(server: CorralServer, path: str) -> None:
    body = b'{"model": "m", "prompt": "x", "stream": false, "keep_alive": 1' + b"0" * 400 + b"}"
    answer = post(server, path, body)
    assert answer.status_code == 400, answer.text


@pytest.mark.parametrize(
    "inner", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000], ids=["list", "dict"]
)
def test_deeply_nested_json_is_a_400(server: CorralServer, inner: bytes) -> None:
    answer = post(server, "/v1/completions", b'{"model": "m", "x": ' + inner + b"}")
    assert answer.status_code == 400, answer.text


def test_keep_alive_forever_leaves_running_listable(server: CorralServer) -> None:
    body = b'{"model": "m", "prompt": "x", "keep_alive": -1}'
    assert post(server, "/v1/completions", body).status_code == 200
    assert httpx.get(f"{server.url}/running", timeout=5).status_code == 200


def test_a_huge_keep_alive_leaves_ps_listable(server: CorralServer) -> None:
    body = b'{"model": "m", "prompt": "x", "keep_alive": 1e308}'
    assert post(server, "/v1/completions", body).status_code == 200
    assert httpx.get(f"{server.url}/api/ps", timeout=5).status_code == 200
