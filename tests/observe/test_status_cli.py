"""``corral status`` and ``corral logs``, run as a user would, against a running corral."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support import CorralServer, corral_bin, fake_cmd

CONFIG = {
    "models": [
        {"name": "m", "cmd": fake_cmd("m", "--stderr-lines", "3")},
        {"name": "idle", "cmd": fake_cmd("idle")},
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("cli")) as running:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=30)
        yield running


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([corral_bin(), *args], capture_output=True, text=True, timeout=60)


def test_status_shows_every_model(server: CorralServer) -> None:
    done = corral("status", "--url", server.url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:2] == ["MODEL", "STATE"]
    by_model = {row.split()[0]: row.split() for row in rows}
    assert by_model["m"][1] == "ready" and by_model["idle"][1] == "unloaded"
    countdown = by_model["m"][3]  # MEMORY is "-": one word; the default TTL is 300 s
    assert countdown.startswith("4:") or countdown == "5:00", rows


def test_logs_prints_a_models_lines(server: CorralServer) -> None:
    done = corral("logs", "m", "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert "log line 3 of 3" in done.stdout


def test_an_unreachable_corral_is_a_clear_error() -> None:
    done = corral("status", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach corral at http://127.0.0.1:9" in done.stderr


def test_an_unknown_model_names_it(server: CorralServer) -> None:
    done = corral("logs", "nope", "--url", server.url)
    assert done.returncode == 1 and "nope" in done.stderr


def follow_until(argv: list[str], wanted: str, times: int = 1, timeout: float = 30) -> str:
    """Run a command that never ends by itself; its output once ``wanted`` appeared
    ``times`` times."""
    seen = ""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill)  # a missing line fails instead of hanging
        timer.start()
        try:
            for line in proc.stdout:
                seen += line
                if seen.count(wanted) >= times:
                    break
        finally:
            timer.cancel()
            proc.terminate()
            proc.wait(10)
    assert seen.count(wanted) >= times, seen
    return seen


def test_logs_follow_prints_new_lines_as_they_come(server: CorralServer) -> None:
    httpx.post(f"{server.url}/unload/m", timeout=30).raise_for_status()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    load = threading.Timer(
        1.0, lambda: httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    )
    load.start()  # a new child, after the command began following
    try:
        # The stopped child's last lines first, then the new child's as they are written.
        argv = [corral_bin(), "logs", "m", "-f", "--url", server.url]
        follow_until(argv, "log line 3 of 3", times=2)
    finally:
        load.join()


def test_status_watch_redraws_when_a_model_loads(server: CorralServer) -> None:
    body = {"model": "idle", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.url}/v1/chat/completions"
    load = threading.Timer(1.0, lambda: httpx.post(url, json=body, timeout=30))
    load.start()
    try:
        # (Piped, click leaves out the escape codes that redraw in place on a terminal.)
        argv = [corral_bin(), "status", "--watch", "--url", server.url]
        seen = follow_until(argv, "idle   ready")
    finally:
        load.join()
    assert "idle   unloaded" in seen  # the first table, before the load
