"""Faults with the real llama-server and the real Gemma 3 270M, where the real thing can play
them: SIGKILL of the child while it loads, mid-stream and idle; a missing or truncated model
file; a port taken when the child binds it; corral itself SIGKILLed and restarted.

After each: the client got its answer or a clear error, no child is orphaned, and the next
request succeeds.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.helpers import (
    assert_envelope,
    assert_no_orphans,
    assert_openai_error,
    kill,
    port_taken_once,
    same_instance,
)
from tests.support import DEMO_FILE, CorralServer, demo_model, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemma-3-270m"
# A counting prompt that never stops early: the stream is long enough to be cut mid-way.
LONG = {"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 400, "ignore_eos": True}


def serve(tmp: Path, models_dir: Path, llama_server: str, **config: Any) -> CorralServer:
    settings = {"models_path": str(models_dir), "llama_server": llama_server, **config}
    settings.setdefault("models", [demo_model()])
    return CorralServer(settings, tmp)


def ask(server: CorralServer, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "prompt": "The sky is", "max_tokens": 4}
    return httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)


def llama_children(server: CorralServer) -> int:
    return sum("llama-server" in p.name() for p in server.children())


async def child_pid(client: httpx.AsyncClient, server: CorralServer, state: str) -> int:
    for _ in range(3000):
        running = (await client.get(f"{server.url}/running")).json()["running"]
        pids = [r["pid"] for r in running if r["state"] == state and r["pid"]]
        if pids:
            return int(pids[0])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no child in state {state} within 30 s")


async def stream_and_kill(server: CorralServer, kill_child: bool) -> str:
    """Stream a long answer; after its first chunks, SIGKILL the child (or corral)."""
    text = ""
    async with httpx.AsyncClient(timeout=120) as client:
        url = f"{server.url}/v1/completions"
        try:
            async with client.stream("POST", url, json={**LONG, "stream": True}) as answer:
                async for part in answer.aiter_text():
                    text += part
                    if text.count("data: ") == 3:
                        if kill_child:
                            os.kill(await child_pid(client, server, "ready"), signal.SIGKILL)
                        else:
                            kill(server)
        except httpx.TransportError as exc:
            if kill_child:
                raise
            return f"{text}\n(transport error: {type(exc).__name__})"
    return text


async def kill_while_loading(server: CorralServer) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120) as client:
        body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
        sent = asyncio.create_task(client.post(f"{server.url}/v1/completions", json=body))
        pid = await child_pid(client, server, "loading")
        await asyncio.sleep(random.uniform(0, 0.2))  # somewhere in the ~0.8 s load
        os.kill(pid, signal.SIGKILL)
        return await sent


def test_child_sigkilled_while_loading(tmp_path: Path, models_dir: Path, llama_server: str) -> None:
    with serve(tmp_path, models_dir, llama_server) as server:
        error = assert_openai_error(asyncio.run(kill_while_loading(server)), 503)
        assert f"'{MODEL}'" in error["message"] and "during load" in error["message"]
        assert ask(server).status_code == 200, "the next request loads it again"
        assert llama_children(server) == 1
    assert_no_orphans(server)


def test_child_sigkilled_mid_stream_then_while_idle(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server) as server:
        text = asyncio.run(stream_and_kill(server, kill_child=True))
        assert "[DONE]" not in text
        note = text.rstrip().rsplit("data: ", 1)[-1]
        assert_envelope(httpx.Response(502, content=note).json(), 502)
        wait_until(lambda: "reason=crash" in server.log(), 10, "the crash to be noticed")
        assert ask(server).status_code == 200, "after a kill mid-stream"

        idle = server.running()[0]["pid"]
        os.kill(idle, signal.SIGKILL)
        wait_until(lambda: server.log().count("reason=crash") == 2, 10, "the idle child's death")
        assert server.running() == []
        assert ask(server).status_code == 200, "after a kill while idle"
        assert llama_children(server) == 1
    assert_no_orphans(server)


def test_missing_or_truncated_model_file_is_a_clear_503(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    cut = tmp_path / "cut.gguf"
    with (models_dir / DEMO_FILE).open("rb") as whole:
        cut.write_bytes(whole.read(1024 * 1024))
    models = [
        demo_model(),
        demo_model("gone", path=str(tmp_path / "gone.gguf")),
        demo_model("cut", path=str(cut)),
    ]
    with serve(tmp_path, models_dir, llama_server, models=models) as server:
        assert ask(server).status_code == 200
        for name in ("gone", "cut"):
            error = assert_openai_error(ask(server, name), 503)
            message = error["message"]
            assert f"'{name}'" in message and "failed to load model" in message, message
            assert ask(server).status_code == 200, f"corral serves on after {name}"
        assert llama_children(server) == 1
    assert_no_orphans(server)


def test_a_taken_port_is_retried_with_the_real_server(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    argv = [llama_server, "-m", str(models_dir / DEMO_FILE), "--host", "127.0.0.1"]
    argv += ["--port", "{port}", "-c", "1024", "--no-jinja", "--chat-template", "gemma"]
    models = [{"name": MODEL, "cmd": port_taken_once(tmp_path, "real", argv)}]
    with serve(tmp_path, models_dir, llama_server, models=models) as server:
        assert ask(server).status_code == 200
        assert f"retry {MODEL}: port" in server.log(), "llama-server's bind error was missed"
    assert_no_orphans(server)


def test_corral_sigkilled_mid_stream_then_restarted(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "models": [demo_model()],
    }
    with CorralServer(config, tmp_path) as first:
        text = asyncio.run(stream_and_kill(first, kill_child=False))
    assert "transport error" in text, "the client was not told that the answer broke off"
    assert_no_orphans(first)  # the parent-death signal took llama-server down with it
    with same_instance(first, config, tmp_path) as second:
        assert ask(second).status_code == 200
    assert_no_orphans(first, second)
