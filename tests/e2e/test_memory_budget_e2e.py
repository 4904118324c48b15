"""corral under a CPU memory budget, in front of the real llama-server: two entries over the
demo model (contexts 1024 and 2048, so two children and two estimates: ~274 and ~294 MiB).
A budget for both keeps both loaded; a budget for one evicts the least recently used; a
budget for neither is a 503 with the figures, and nothing starts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import CorralServer, completion, demo_model, wait_until

pytestmark = pytest.mark.e2e


def serve(tmp_path: Path, models_dir: Path, llama_server: str, budget: str) -> CorralServer:
    settings = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "devices": {"cpu": {"memory": budget}},
        "memory_margin": 0,
        "state_dir": str(tmp_path / "state"),
        "models": [
            demo_model("one", context_size=1024, gpu_layers=0),
            demo_model("two", context_size=2048, gpu_layers=0),
        ],
    }
    return CorralServer(settings, tmp_path)


def ask(server: CorralServer, model: str) -> httpx.Response:
    return completion(server, model, timeout=120, max_tokens=2)


def loaded(server: CorralServer) -> list[str]:
    return sorted(m["model"] for m in server.running())


def test_a_budget_for_both_keeps_both_loaded_without_a_swap(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server, "800MiB") as server:
        for model in ("one", "two", "one", "two"):
            assert ask(server, model).status_code == 200
        assert loaded(server) == ["one", "two"]
        assert len(server.children()) == 2
        assert "reason=swap" not in server.log()
        # Memory is shown: measured from the children's own lines once they loaded.
        memory = {m["model"]: m["memory"] for m in server.running()}
        assert {m["source"] for m in memory.values()} == {"measured"}, memory
        print({name: round(figure["bytes"] / 1024**2, 1) for name, figure in memory.items()})
        for figure in memory.values():
            assert 200 * 1024**2 < figure["bytes"] < 400 * 1024**2
            assert set(figure["by_device"]) == {"cpu"}
        ps = httpx.get(f"{server.url}/api/ps", timeout=5).json()["models"]
        assert {m["name"]: (m["size"], m["size_vram"]) for m in ps} == {
            name: (figure["bytes"], 0) for name, figure in memory.items()
        }
        listed = httpx.get(f"{server.url}/v1/models", timeout=5).json()["data"]
        assert {m["id"]: m["memory"] for m in listed} == memory
        kept = (tmp_path / "state" / "measured.json").read_text()
        assert '"one@' in kept and '"two@' in kept


def test_a_budget_for_one_evicts_the_least_recently_used(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server, "400MiB") as server:
        assert ask(server, "one").status_code == 200
        before = {m["model"]: m["memory"]["source"] for m in server.running()}
        assert ask(server, "two").status_code == 200
        assert loaded(server) == ["two"]
        wait_until(lambda: len(server.children()) == 1, 30, "one child left after the swap")
        assert ask(server, "one").status_code == 200
        assert loaded(server) == ["one"]
        wait_until(lambda: len(server.children()) == 1, 30, "one child left after the swap")
        assert server.log().count("reason=swap") == 2
        assert before == {"one": "measured"}


def test_a_budget_for_neither_is_a_503_with_the_figures(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    with serve(tmp_path, models_dir, llama_server, "200MiB") as server:
        answer = ask(server, "one")
        assert answer.status_code == 503
        message = answer.json()["error"]["message"]
        assert message.startswith("model 'one' cannot load: needs ")
        assert "on cpu, whose budget is 200.0 MiB" in message
        assert server.children() == []
        assert server.running() == []
