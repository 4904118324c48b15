"""Starting, swapping, queueing, TTL and reload, seen from clients of a real corral."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import CorralServer, completion, fake_cmd, wait_until


async def many(server: CorralServer, model: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        body = {"model": model, "prompt": "x"}
        return await asyncio.gather(
            *(client.post(f"{server.url}/v1/completions", json=body) for _ in range(count))
        )


def test_concurrent_requests_for_a_stopped_model_cause_one_start(tmp_path: Path) -> None:
    config = {"models": [{"name": "slow", "cmd": fake_cmd("slow", "--load-seconds", "0.5")}]}
    with CorralServer(config, tmp_path) as server:
        answers = asyncio.run(many(server, "slow", 12))
        assert [a.status_code for a in answers] == [200] * 12
        assert server.log().count("start slow") == 1


def test_swap_waits_for_the_running_generation_to_finish(tmp_path: Path) -> None:
    config = {
        "models": [
            {"name": "a", "cmd": fake_cmd("a", "--tokens", "20", "--token-delay", "0.05")},
            {"name": "b", "cmd": fake_cmd("b")},
        ]
    }
    with CorralServer(config, tmp_path) as server:
        completion(server, "a")

        async def scenario() -> tuple[str, httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                body = {"model": "a", "prompt": "x", "stream": True}

                async def stream_a() -> str:
                    async with client.stream(
                        "POST", f"{server.url}/v1/completions", json=body
                    ) as answer:
                        return "".join([part async for part in answer.aiter_text()])

                streaming = asyncio.create_task(stream_a())
                await asyncio.sleep(0.2)  # let a's stream begin before b is asked for
                other = await client.post(
                    f"{server.url}/v1/completions", json={"model": "b", "prompt": "x"}
                )
                return await streaming, other

        text, other = asyncio.run(scenario())
        assert text.rstrip().endswith("data: [DONE]"), "a's generation was cut short"
        assert other.status_code == 200 and other.json()["upstream"] == "b"
        assert [r["model"] for r in server.running()] == ["b"]
        assert "stop a reason=swap" in server.log()


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    slow = fake_cmd("q", "--tokens", "10", "--token-delay", "0.1")
    config = {"models": [{"name": "q", "cmd": slow, "concurrency": 1, "max_queue": 1}]}
    with CorralServer(config, tmp_path) as server:
        completion(server, "q")
        answers = asyncio.run(many(server, "q", 4))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 200, 503, 503]
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert "max_queue" in refused.json()["error"]["message"]
        assert completion(server, "q").status_code == 200, "it keeps serving afterwards"


def test_ttl_zero_never_unloads_and_model_ttl_overrides_default(tmp_path: Path) -> None:
    config = {
        "default_ttl": 0,
        "groups": {"all": {"members": ["keep", "brief"], "swap": False}},
        "models": [
            {"name": "keep", "cmd": fake_cmd("keep")},
            {"name": "brief", "cmd": fake_cmd("brief"), "ttl": 1},
        ],
    }
    with CorralServer(config, tmp_path) as server:
        completion(server, "keep")
        completion(server, "brief")
        wait_until(lambda: "stop brief reason=ttl" in server.log(), 15, "brief's TTL")
        assert [r["model"] for r in server.running()] == ["keep"]
        assert "stop keep" not in server.log()


def test_sighup_reload_keeps_unchanged_models_running(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "groups": {"all": {"members": ["same", "changed"], "swap": False}},
        "models": [
            {"name": "same", "cmd": fake_cmd("same")},
            {"name": "changed", "cmd": fake_cmd("changed")},
        ],
    }
    with CorralServer(config, tmp_path) as server:
        completion(server, "same")
        completion(server, "changed")
        before = {r["model"]: r["pid"] for r in server.running()}
        config["models"][1]["cmd"] = fake_cmd("changed", "--tokens", "3")
        config["models"].append({"name": "added", "cmd": fake_cmd("added")})
        config["groups"]["all"]["members"].append("added")
        server.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded config" in server.log(), 15, "the reload")
        after = {r["model"]: r["pid"] for r in server.running()}
        assert after == {"same": before["same"]}
        assert "stop changed reason=reload" in server.log()
        assert completion(server, "added").json()["upstream"] == "added"


def test_bad_config_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    config = {"models": [{"name": "m", "cmd": fake_cmd("m")}]}
    with CorralServer(config, tmp_path) as server:
        completion(server, "m")
        server.config_path.write_text("models: [{name: m, contxt_size: 1}]", encoding="utf-8")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in server.log(), 15, "the failed reload")
        assert "contxt_size" in server.log()
        assert completion(server, "m").status_code == 200


def test_preload_starts_the_model_with_corral(tmp_path: Path) -> None:
    config = {
        "models": [
            {"name": "early", "cmd": fake_cmd("early"), "preload": True},
            {"name": "late", "cmd": fake_cmd("late")},
        ]
    }
    with CorralServer(config, tmp_path) as server:
        wait_until(lambda: "ready early" in server.log(), 15, "the preloaded model")
        assert [r["model"] for r in server.running()] == ["early"]
        assert "start late" not in server.log()
