"""A child that hangs without answering, and a port that is taken when the child binds it.

Played by the fake upstream: ``--hang`` never answers a completion; the port is taken for
real (a wrapper holds it) or the bind failure is simulated (``--fail-bind``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.reliability.helpers import assert_no_orphans, assert_openai_error, kill, port_taken_once
from tests.support import FAKE_UPSTREAM, CorralServer, completion, fake_cmd, wait_until


def hang_up_on(server: CorralServer, model: str, stream: bool) -> None:
    """A client with a 1 s timeout asks a hung model, gives up and closes its connection.

    The model is preloaded and ready first, so the client gives up on the child's answer,
    not on the load."""
    wait_until(lambda: ready(server, model), 30, f"{model} to be preloaded")
    body = {"model": model, "prompt": "x", "stream": stream}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=1)


def finish(server: CorralServer) -> None:
    """End corral at once (SIGKILL); the children must still go."""
    kill(server)
    assert_no_orphans(server)


def ready(server: CorralServer, model: str) -> bool:
    return any(r["model"] == model and r["state"] == "ready" for r in server.running())


def hung(name: str) -> dict[str, object]:
    return {"name": name, "cmd": fake_cmd(name, "--hang"), "preload": True}


def in_flight(server: CorralServer, model: str) -> int:
    return sum(r["in_flight"] for r in server.running() if r["model"] == model)


def test_a_hung_child_leaves_models_beside_it_serving(tmp_path: Path) -> None:
    config = {
        "groups": {"pair": {"members": ["h", "ok"], "swap": False}},
        "models": [
            hung("h"),
            {"name": "ok", "cmd": fake_cmd("ok")},
        ],
    }
    with CorralServer(config, tmp_path) as server:
        hang_up_on(server, "h", stream=False)
        hang_up_on(server, "h", stream=True)
        answer = completion(server, "ok", timeout=15)
        assert answer.status_code == 200 and answer.json()["upstream"] == "ok"
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        finish(server)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_client_hanging_up_on_a_hung_child_gives_its_place_back(
    tmp_path: Path, stream: bool
) -> None:
    config = {"models": [hung("h")]}
    with CorralServer(config, tmp_path) as server:
        hang_up_on(server, "h", stream)
        try:
            wait_until(lambda: in_flight(server, "h") == 0, 5, "the departed client's lease to end")
        finally:
            finish(server)


def test_a_hung_child_does_not_block_a_swap_once_its_client_left(tmp_path: Path) -> None:
    # One model at a time (no groups): asking for `ok` must drain and stop `h`.
    config = {
        "models": [
            hung("h"),
            {"name": "ok", "cmd": fake_cmd("ok")},
        ]
    }
    with CorralServer(config, tmp_path) as server:
        hang_up_on(server, "h", stream=False)
        try:
            answer = completion(server, "ok", timeout=10)
        except httpx.ReadTimeout:
            raise AssertionError("the swap to `ok` waited for a request nobody waits for") from None
        finally:
            finish(server)
        assert answer.status_code == 200


def test_a_taken_port_is_retried_on_another(tmp_path: Path) -> None:
    fake = [sys.executable, str(FAKE_UPSTREAM), "--port", "{port}", "--name", "p"]
    config = {"models": [{"name": "p", "cmd": port_taken_once(tmp_path, "p", fake)}]}
    with CorralServer(config, tmp_path) as server:
        answer = completion(server, "p")
        assert answer.status_code == 200 and answer.json()["upstream"] == "p"
        held = re.search(r"holding port (\d+)", httpx.get(f"{server.url}/logs/p").text)
        assert held, "the first run did not take its port"
        assert f"retry p: port {held[1]} was taken" in server.log()
        assert server.running()[0]["port"] != int(held[1])
    assert_no_orphans(server)


def test_a_port_taken_on_every_attempt_fails_clearly_and_others_still_serve(
    tmp_path: Path,
) -> None:
    config = {
        "models": [
            {"name": "busy", "cmd": fake_cmd("busy", "--fail-bind")},
            {"name": "ok", "cmd": fake_cmd("ok")},
        ]
    }
    with CorralServer(config, tmp_path) as server:
        for _ in range(2):  # and again: a failure is not remembered as a hang
            error = assert_openai_error(completion(server, "busy"), 503)
            assert "'busy'" in error["message"] and "couldn't bind" in error["message"]
        assert server.log().count("retry busy: port") == 4, "two retries per request"
        assert completion(server, "ok").status_code == 200
        assert server.children() and all("ok" in p.cmdline() for p in server.children())
    assert_no_orphans(server)
