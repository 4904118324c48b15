"""Fuzzing /upstream/<model>/<path>: dot segments, encoded dots and slashes, NUL, CR/LF,
query and fragment markers, and user-info tricks, sent byte for byte.

What must hold: the request reaches the named model's child and nothing else (not another
model's child, not corral's own routes, not a file), no 500, and corral stays up. What the
child answers is relayed as it is; corral's own errors carry the OpenAI envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import (
    assert_alive,
    assert_answer_shaped,
    assert_no_injected_header,
    raw_request,
    recorder_cmd,
)
from tests.support import CorralServer, fake_cmd

SEGMENTS = st.sampled_from(
    [
        *["..", ".", "%2e%2e", "%2E%2e", "%252e%252e", "..%2f..%2f", "%5c..%5c", ""],
        *["%2f", "%2F", "etc", "passwd", "health", "v1", "models", "~root"],
        *["%00", "%0d%0aX-Injected:%201", "%0d", "%20", "%3f", "%23", "http:"],
        *["@127.0.0.1:1", "%40evil.example", "caf%C3%A9"],
    ]
)
# Which child must answer a path under each prefix (the fakes name themselves in /v1/models).
PREFIXES = {"m": "m", "org/model:q4": "q", "org%2Fmodel:q4": "q", "alias": "q", "nope": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    config = {
        "groups": {"all": {"members": ["m", "org/model:q4"], "swap": False}},
        "models": [
            {"name": "m", "cmd": fake_cmd("m")},
            {"name": "org/model:q4", "cmd": fake_cmd("q"), "aliases": ["alias"]},
        ],
    }
    with CorralServer(config, tmp_path_factory.mktemp("upstream")) as running:
        yield running


def get(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    body = b"{}" if method == "POST" else b""
    answer = raw_request(port, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert_no_injected_header(answer)
    headers = {name.lower(): value for name, value in answer.headers}
    return answer.status, headers, answer.body


def test_paths_under_upstream_stay_inside_the_named_child(server: CorralServer) -> None:
    tried = 0

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.sampled_from(list(PREFIXES)),
        st.lists(SEGMENTS, min_size=1, max_size=6),
        st.sampled_from(["GET", "POST"]),
    )
    def run(prefix: str, segments: list[str], method: str) -> None:
        nonlocal tried
        tried += 1
        path = f"/upstream/{prefix}/" + "/".join(segments)
        status, headers, body = get(server.port, method, path)
        assert b"root:" not in body, f"{path} read a file: {body[:200]!r}"
        assert status < 500, (path, status, body[:200])
        if "aiohttp" in headers.get("server", ""):  # the fake child's own answer, relayed
            if body.startswith(b"{"):
                reply = json.loads(body)
                if reply.get("object") == "list":  # its /v1/models: it names itself
                    assert reply["data"][0]["id"] == PREFIXES[prefix], (path, reply)
            return
        assert_answer_shaped(status, body, "/upstream/", path)
        if status == 200:  # a 200 from corral itself: only its routes could give one
            raise AssertionError(f"{path} was answered by corral, not a child: {body[:200]!r}")

    run()
    print(f"upstream path fuzz: {tried} cases")
    assert_alive(server)


def test_the_child_gets_the_path_encoded_as_the_client_sent_it(tmp_path: Path) -> None:
    cmd, seen = recorder_cmd(tmp_path)
    sent = ["a%20b", "a%00b", "caf%C3%A9", "x%0d%20HTTP/1.1%0dX-Evil:%201"]
    with CorralServer({"models": [{"name": "r", "cmd": cmd}]}, tmp_path) as server:
        for path in sent:
            status, _, _ = get(server.port, "GET", f"/upstream/r/{path}")
            assert status == 200
    lines = seen.read_bytes().splitlines()
    assert lines == [f"GET /{path} HTTP/1.1".encode() for path in sent], lines
