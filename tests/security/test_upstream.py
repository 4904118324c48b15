"""/upstream/<model>/<path>: linear in the path's length, and read-only unless allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.supervisor.api.upstream import candidates
from tests.support import CorralServer, fake_cmd

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
