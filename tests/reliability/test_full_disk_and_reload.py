"""Two faults around corral's own housekeeping: a disk too full to take its log, and a config
reloaded (SIGHUP) while requests are in flight.

A full disk is simulated by running corral with stdout and stderr on /dev/full, where every
write fails with ENOSPC: every log line it writes, at every level, fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.reliability.helpers import FullDiskCorral, assert_no_orphans, assert_openai_error
from tests.support import CorralServer, completion, fake_cmd, wait_until

SLOW = ("--tokens", "30", "--token-delay", "0.05")


async def stream(server: CorralServer, model: str, began: asyncio.Event) -> str:
    body = {"model": model, "prompt": "x", "stream": True}
    text = ""
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", f"{server.url}/v1/completions", json=body) as answer,
    ):
        assert answer.status_code == 200
        async for part in answer.aiter_text():
            text += part
            began.set()
    return text


def whole(text: str, tokens: int) -> bool:
    """A stream that ended properly and carried every token."""
    return text.endswith("data: [DONE]\n\n") and f" t{tokens - 1}" in text


def test_a_full_disk_for_the_log_does_not_stop_the_service(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "models": [
            {"name": "a", "cmd": fake_cmd("a")},
            {"name": "b", "cmd": fake_cmd("b")},
            {"name": "bad", "cmd": fake_cmd("bad", "--crash-during-load")},
        ]
    }
    with FullDiskCorral(config, tmp_path) as server:
        assert completion(server, "a").status_code == 200  # info: start, ready
        assert whole(asyncio.run(stream(server, "a", asyncio.Event())), 5)
        pid = server.running()[0]["pid"]
        os.kill(pid, signal.SIGKILL)  # warning: a crash
        wait_until(lambda: not server.running(), 10, "the crash to be noticed")
        assert completion(server, "a").status_code == 200
        assert_openai_error(completion(server, "bad"), 503)  # error: a failed start
        assert_openai_error(completion(server, "nope"), 404)
        assert completion(server, "b").status_code == 200  # info: a swap
        config["models"].append({"name": "c", "cmd": fake_cmd("c")})
        server.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        server.signal(signal.SIGHUP)  # info: the reload
        wait_until(lambda: "c" in models(server), 10, "the reload to add c")
        assert completion(server, "c").json()["upstream"] == "c"
        assert server.proc is not None and server.proc.poll() is None
    # As without a full disk: uvicorn re-raises the SIGTERM once it has shut down cleanly.
    assert server.proc.returncode in (0, -signal.SIGTERM), server.proc.returncode
    assert_no_orphans(server)


def models(server: CorralServer) -> list[str]:
    return [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=5).json()["data"]]


def write(server: CorralServer, config: dict[str, Any]) -> None:
    server.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")


async def running_pids(server: CorralServer) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=5) as client:
        running = (await client.get(f"{server.url}/running")).json()["running"]
    return {r["model"]: r["pid"] for r in running}


async def until_loading(server: CorralServer, model: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(1000):
            running = (await client.get(f"{server.url}/running")).json()["running"]
            if any(r["model"] == model and r["state"] == "loading" for r in running):
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{model} did not start loading")


def test_sighup_mid_stream_lets_the_streams_finish(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "groups": {"all": {"members": ["same", "changed"], "swap": False}},
        "models": [
            {"name": "same", "cmd": fake_cmd("same", *SLOW)},
            {"name": "changed", "cmd": fake_cmd("changed", *SLOW)},
        ],
    }
    with CorralServer(config, tmp_path) as server:

        async def scenario() -> tuple[list[str], dict[str, int]]:
            began = [asyncio.Event(), asyncio.Event()]
            streams = [
                asyncio.create_task(stream(server, m, e))
                for m, e in zip(["same", "changed"], began, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in began)), 20)
            pids = await running_pids(server)
            config["models"][1]["cmd"] = fake_cmd("changed", "--tokens", "3")
            write(server, config)
            server.signal(signal.SIGHUP)
            return await asyncio.gather(*streams), pids

        texts, pids = asyncio.run(scenario())
        assert all(whole(t, 30) for t in texts), "a reload cut a stream short"
        wait_until(lambda: "reloaded config" in server.log(), 15, "the reload")
        assert "stop changed reason=reload" in server.log()
        assert {r["model"]: r["pid"] for r in server.running()} == {"same": pids["same"]}
        answer = completion(server, "changed")
        assert answer.json()["choices"][0]["text"] == "changed: t1 t2", "the new config serves"
    assert_no_orphans(server)


def test_sighup_mid_load_and_repeated_mid_stream(tmp_path: Path) -> None:
    """A reload while a model loads, then a burst of reloads over concurrent streams: every
    client gets its whole answer, and afterwards the last config is the one served."""
    config: dict[str, Any] = {
        "models": [{"name": "m", "cmd": fake_cmd("m", "--load-seconds", "1", *SLOW)}]
    }
    with CorralServer(config, tmp_path) as server:

        async def scenario() -> list[str]:
            streams = [asyncio.create_task(stream(server, "m", asyncio.Event())) for _ in range(3)]
            await until_loading(server, "m")  # the load takes 1 s: the reloads land inside it
            for tokens in (20, 10, 5):
                config["models"][0]["cmd"] = fake_cmd("m", "--tokens", str(tokens))
                write(server, config)
                server.signal(signal.SIGHUP)
                await asyncio.sleep(0.2)
            return await asyncio.gather(*streams)

        texts = asyncio.run(scenario())
        assert all(whole(t, 30) for t in texts), "a reload cut a stream short"
        wait_until(lambda: "stop m reason=reload" in server.log(), 15, "the reload")
        # The SIGHUPs may coalesce into fewer reloads, but the last file is the one in force.
        answer = completion(server, "m")
        assert answer.json()["choices"][0]["text"] == "m: t1 t2 t3 t4", answer.text
        assert len(server.children()) == 1
    assert_no_orphans(server)


def test_a_request_queued_across_a_reload_leaves_no_untracked_child(tmp_path: Path) -> None:
    model = {"name": "m", "concurrency": 1, "cmd": fake_cmd("m", *SLOW)}
    config: dict[str, Any] = {"models": [model]}
    with CorralServer(config, tmp_path) as server:
        completion(server, "m")

        async def scenario() -> list[str]:
            first, second = asyncio.Event(), asyncio.Event()
            streaming = asyncio.create_task(stream(server, "m", first))
            await asyncio.wait_for(first.wait(), 20)
            queued = asyncio.create_task(stream(server, "m", second))
            await until_queued(server, "m")
            model["cmd"] = fake_cmd("m", "--tokens", "3")
            write(server, config)
            server.signal(signal.SIGHUP)
            return list(await asyncio.gather(streaming, queued))

        texts = asyncio.run(scenario())
        assert all(t.endswith("data: [DONE]\n\n") for t in texts)
        completion(server, "m")
        assert len(server.children()) == len(server.running()) == 1, server.log()


async def until_queued(server: CorralServer, model: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(1000):
            running = (await client.get(f"{server.url}/running")).json()["running"]
            if any(r["model"] == model and r["queued"] for r in running):
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"no request queued for {model}")
