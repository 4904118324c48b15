"""Faults a real llama-server won't produce on demand, played by the fake upstream.

After each: the client got an answer or a clear error, never a hang, and the next request works.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import psutil

from tests.support import FAKE_UPSTREAM, CorralServer, completion, fake_cmd, wait_until


def crash_once_cmd(name: str, tmp: Path, *fault: str) -> list[str]:
    """A fake that plays ``fault`` on its first run only (a flag file remembers)."""
    flag = tmp / f"{name}.first-run"
    flag.touch()
    wrapper = tmp / f"{name}-once.py"
    wrapper.write_text(
        "import os, runpy, sys\n"
        f"if os.path.exists({str(flag)!r}):\n"
        f"    os.remove({str(flag)!r})\n"
        f"    sys.argv += {list(fault)!r}\n"
        f"sys.argv[0] = {str(FAKE_UPSTREAM)!r}\n"
        f"runpy.run_path({str(FAKE_UPSTREAM)!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    return [sys.executable, str(wrapper), "--port", "{port}", "--name", name]


def test_crash_during_load_fails_every_waiter_then_recovers(tmp_path: Path) -> None:
    cmd = crash_once_cmd("c", tmp_path, "--crash-during-load", "--stderr-lines", "2")
    with CorralServer({"models": [{"name": "c", "cmd": cmd}]}, tmp_path) as server:

        async def three() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                body = {"model": "c", "prompt": "x"}
                url = f"{server.url}/v1/completions"
                return await asyncio.gather(*(client.post(url, json=body) for _ in range(3)))

        failed = asyncio.run(three())
        assert [a.status_code for a in failed] == [503] * 3
        message = failed[0].json()["error"]["message"]
        assert "'c'" in message and "log line" in message, message
        assert server.log().count("start c") == 1, "waiters share one failed attempt"
        assert completion(server, "c").status_code == 200, "the next request tries again"


def test_never_ready_times_out_with_a_clear_503(tmp_path: Path) -> None:
    config = {
        "health_timeout": 1,
        "models": [{"name": "stuck", "cmd": fake_cmd("stuck", "--never-ready")}],
    }
    with CorralServer(config, tmp_path) as server:
        answer = completion(server, "stuck")
        assert answer.status_code == 503
        assert "stuck" in answer.json()["error"]["message"]
        wait_until(lambda: not server.children(), 10, "the stuck child to be killed")


def test_crash_mid_stream_ends_the_stream_with_an_error_then_recovers(tmp_path: Path) -> None:
    cmd = crash_once_cmd("s", tmp_path, "--crash-after-chunks", "2", "--tokens", "10")
    with CorralServer({"models": [{"name": "s", "cmd": cmd}]}, tmp_path) as server:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/completions",
            json={"model": "s", "prompt": "x", "stream": True},
            timeout=30,
        ) as answer:
            text = answer.read().decode()
        assert '"upstream_error"' in text, text
        assert "[DONE]" not in text
        wait_until(lambda: "reason=crash" in server.log(), 10, "the crash to be noticed")
        assert completion(server, "s").status_code == 200


def test_crash_mid_answer_without_streaming_is_a_502(tmp_path: Path) -> None:
    cmd = crash_once_cmd("n", tmp_path, "--crash-after-seconds", "0.3", "--hang")
    with CorralServer({"models": [{"name": "n", "cmd": cmd}]}, tmp_path) as server:
        answer = completion(server, "n")
        assert answer.status_code == 502
        assert "may have crashed" in answer.json()["error"]["message"]
        assert completion(server, "n").status_code == 200


def test_client_hang_up_cancels_the_upstream_generation(tmp_path: Path) -> None:
    cmd = fake_cmd("d", "--tokens", "200", "--token-delay", "0.05")
    with CorralServer({"models": [{"name": "d", "cmd": cmd}]}, tmp_path) as server:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/completions",
            json={"model": "d", "prompt": "x", "stream": True},
            timeout=30,
        ) as answer:
            chunks = answer.iter_raw()
            next(chunks)
            next(chunks)
        # Leaving the block closed the connection mid-stream.

        def child_saw_hangup() -> bool:
            logs = httpx.get(f"{server.url}/logs/d").text
            return "disconnected POST /v1/completions" in logs

        wait_until(child_saw_hangup, 10, "the child to see the client's hang-up")
        wait_until(lambda: server.running()[0]["in_flight"] == 0, 5, "the lease to end")
        assert completion(server, "d", stream=False).status_code == 200


def test_one_models_crash_does_not_disturb_anothers_requests(tmp_path: Path) -> None:
    config = {
        "groups": {"pair": {"members": ["steady", "fragile"], "swap": False}},
        "models": [
            {
                "name": "steady",
                "cmd": fake_cmd("steady", "--tokens", "10", "--token-delay", "0.05"),
            },
            {"name": "fragile", "cmd": fake_cmd("fragile")},
        ],
    }
    with CorralServer(config, tmp_path) as server:
        completion(server, "fragile")
        fragile_pid = next(r["pid"] for r in server.running() if r["model"] == "fragile")

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                body = {"model": "steady", "prompt": "x"}
                task = asyncio.create_task(client.post(f"{server.url}/v1/completions", json=body))
                await asyncio.sleep(0.2)
                psutil.Process(fragile_pid).kill()
                return await task

        steady = asyncio.run(scenario())
        assert steady.status_code == 200 and steady.json()["upstream"] == "steady"
        wait_until(lambda: "stop fragile reason=crash" in server.log(), 10, "the crash log")
        assert completion(server, "fragile").status_code == 200
