"""The event stream (/events) across a load, an unload and a crash, a cancelled load, and a
model's live log (/logs/<model>/stream): a real ``corral serve`` with fake children."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.observe.helpers import Follower
from tests.support import CorralServer, fake_cmd, pids_gone, wait_until

CONFIG = {
    "models": [
        {"name": "m", "cmd": fake_cmd("m", "--tokens", "4", "--stderr-lines", "3")},
        {"name": "crashy", "cmd": fake_cmd("crashy", "--crash-after-seconds", "1.5")},
        {"name": "slow", "cmd": fake_cmd("slow", "--load-seconds", "60")},
        {"name": "slowish", "cmd": fake_cmd("slowish", "--load-seconds", "5")},
    ]
}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("events")) as running:
        yield running


def chat(server: CorralServer, model: str, timeout: float = 60) -> httpx.Response:
    body = {**CHAT, "model": model}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=timeout)


def test_a_load_an_unload_and_a_crash_are_events(server: CorralServer) -> None:
    with Follower(server.url) as follower:
        assert chat(server, "m").status_code == 200
        httpx.post(f"{server.url}/unload/m", timeout=30).raise_for_status()
        assert chat(server, "crashy").status_code == 200
        wait_until(lambda: "crashed" in follower.kinds("crashy"), 20, "the crash event")
        wait_until(lambda: "unloaded" in follower.kinds("m"), 10, "the unload event")
    assert follower.kinds("m")[:3] == ["loading", "ready", "unloaded"]
    by_kind = {e["kind"]: e for e in follower.events if e["model"] == "m"}
    assert by_kind["loading"]["reason"] == "request"
    assert by_kind["ready"]["seconds"] > 0
    assert by_kind["unloaded"]["reason"] == "unload"
    crash = next(e for e in follower.events if e["kind"] == "crashed")
    assert crash["model"] == "crashy" and crash["code"] == 5  # the fake's crash exit code
    queue = [e for e in follower.events if e["kind"] == "queue" and e["model"] == "m"]
    assert {"in_flight": 0, "queued": 0}.items() <= queue[-1].items()  # after its request


def test_queue_changes_are_sent_at_most_four_times_a_second(server: CorralServer) -> None:
    assert chat(server, "m").status_code == 200  # loaded: what follows is the warm path
    with Follower(server.url) as follower:
        began = time.monotonic()
        for _ in range(20):  # 4 queue changes each, 80 in all
            assert chat(server, "m").status_code == 200
        took = time.monotonic() - began
        wait_until(lambda: follower.events, 5, "the last queue change")
        time.sleep(0.5)
    queue = [e for e in follower.events if e["kind"] == "queue"]
    assert 1 <= len(queue) <= took / 0.25 + 2, (len(queue), took)
    assert {"in_flight": 0, "queued": 0}.items() <= queue[-1].items()


def test_a_new_follower_gets_the_recent_events_first(server: CorralServer) -> None:
    assert chat(server, "m").status_code == 200
    with Follower(server.url) as follower:
        wait_until(lambda: "ready" in follower.kinds("m"), 10, "the history")
    assert all(e["kind"] != "queue" for e in follower.events), "queue changes are not history"


def test_a_slow_load_reports_progress_each_second(server: CorralServer) -> None:
    with Follower(server.url) as follower:
        assert chat(server, "slowish").status_code == 200
    progress = [e for e in follower.events if e["kind"] == "progress" and e["model"] == "slowish"]
    assert len(progress) >= 2, follower.events
    assert progress[0]["seconds"] < progress[-1]["seconds"]


def test_the_only_waiter_hanging_up_cancels_the_load_and_its_child(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    with Follower(server.url) as follower:
        with pytest.raises(httpx.ReadTimeout):
            chat(server, "slow", timeout=2)  # the client gives up while "slow" loads
        wait_until(lambda: "load_cancelled" in follower.kinds("slow"), 10, "the cancel event")
    wait_until(lambda: not server.running(), 15, "the loading child to stop")
    assert not server.children(), "a cancelled load left its child running"


def test_a_load_others_wait_for_goes_on_when_one_hangs_up(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    results: list[int] = []
    stays = threading.Thread(target=lambda: results.append(chat(server, "slowish").status_code))
    stays.start()
    wait_until(lambda: server.running(), 10, "the load to begin")
    with pytest.raises(httpx.ReadTimeout):
        chat(server, "slowish", timeout=1)
    stays.join(30)
    assert results == [200]
    assert [m["state"] for m in server.running()] == ["ready"]


def test_a_models_log_streams_its_lines(server: CorralServer) -> None:
    assert chat(server, "m").status_code == 200
    with Follower(server.url, "/logs/m/stream") as follower:
        wait_until(lambda: any("log line 3 of 3" in x for x in follower.lines), 10, "log lines")
        pid = next(m["pid"] for m in server.running() if m["model"] == "m")
        httpx.post(f"{server.url}/unload/m", timeout=30).raise_for_status()
        wait_until(lambda: pids_gone([pid]), 10, "the child to stop")
        seen = len(follower.lines)
        assert chat(server, "m").status_code == 200  # a new child: its lines follow
        wait_until(lambda: len(follower.lines) > seen, 10, "the new child's lines")
    assert any("log line 1 of 3" in x for x in follower.lines[seen:])


def test_an_unknown_models_log_stream_is_a_404(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/logs/nope/stream", timeout=10)
    assert answer.status_code == 404
    assert "nope" in answer.json()["error"]["message"]
