"""Presets that share a file and its server settings share one running child."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import CorralServer, fake_cmd, wait_until


def chat(server: CorralServer, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)


CONFIG = {
    "models": [
        {"name": "base", "cmd": fake_cmd("base"), "ttl": 1},
        {"name": "pirate", "from": "base", "system_prompt": "Arr.", "ttl": 0},
        {"name": "own", "from": "base", "cmd": fake_cmd("own")},
    ]
}


def test_switching_between_presets_costs_no_reload(tmp_path: Path) -> None:
    with CorralServer(CONFIG, tmp_path) as server:
        first = chat(server, "base")
        second = chat(server, "pirate")
        assert first.json()["received"]["messages"][0]["role"] == "user"
        assert second.json()["received"]["messages"][0] == {"role": "system", "content": "Arr."}
        running = server.running()
        assert {r["model"] for r in running} == {"base", "pirate"}
        assert len({r["pid"] for r in running}) == 1, running
        assert server.log().count("start ") == 1
        assert len(server.children()) == 1


def test_a_preset_with_its_own_command_swaps(tmp_path: Path) -> None:
    with CorralServer(CONFIG, tmp_path) as server:
        chat(server, "pirate")
        assert chat(server, "own").json()["upstream"] == "own"
        assert [r["model"] for r in server.running()] == ["own"]
        assert "reason=swap" in server.log()


def test_the_last_used_presets_ttl_governs_the_shared_child(tmp_path: Path) -> None:
    with CorralServer(CONFIG, tmp_path) as server:
        chat(server, "pirate")  # ttl 0: never
        chat(server, "base")  # ttl 1: now this one governs
        wait_until(lambda: "reason=ttl" in server.log(), 15, "base's 1 s ttl")
        assert server.running() == []
