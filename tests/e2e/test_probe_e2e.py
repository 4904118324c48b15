"""``corral check --probe`` against the real llama-server and the demo model (Gemma 3 270M,
whose GGUF has no chat template): with ``chat_template: gemma`` its markers are special
tokens and it passes; with none, llama-server falls back to ChatML, whose ``<|im_start|>``
Gemma's vocabulary splits into text, and it fails. And, on this CPU build, where the demo
model runs when the config asks for a GPU."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corral.supervisor.runtime.child import backends
from tests.support import CorralServer, corral_bin, demo_model

pytestmark = pytest.mark.e2e


def probe(tmp_path: Path, llama_server: str, models_dir: Path, model: dict[str, Any]) -> Any:
    config = {"models_path": str(models_dir), "llama_server": llama_server, "models": [model]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [corral_bin(), "check", "--probe", "--model", model["name"], str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_the_demo_model_with_its_gemma_template_passes(
    tmp_path: Path, llama_server: str, models_dir: Path
) -> None:
    done = probe(tmp_path, llama_server, models_dir, demo_model("gemma"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "  gemma: template corral's gemma template; tools yes; rendered same; markers ok; "
    ) in done.stdout
    # A base model: it never ends its turn, even with its right template. A warning.
    assert "stops no" in done.stdout
    assert "warning: gemma: a greedy answer ran 48 tokens without ending its turn" in done.stderr


def test_the_demo_model_without_a_template_fails_on_chatmls_markers(
    tmp_path: Path, llama_server: str, models_dir: Path
) -> None:
    model = demo_model("raw")
    del model["chat_template"]
    done = probe(tmp_path, llama_server, models_dir, model)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "  raw: template none (llama-server falls back to ChatML); tools no; rendered as "
        "chatml; markers FAIL (<|im_start|> is 6 tokens; <|im_end|> is 6 tokens)"
    ) in done.stdout
    assert "warning: raw: no chat template: its GGUF" in done.stderr
    assert "warning: raw: its turn markers are not special tokens" in done.stderr


def test_the_demo_model_asked_onto_a_gpu_this_build_lacks_says_so(
    tmp_path: Path, llama_server: str, models_dir: Path
) -> None:
    if backends.list_devices(llama_server).gpus:
        pytest.skip("this llama-server has a GPU backend: the model does run on the GPU")
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "state_dir": str(tmp_path / "state"),
        "devices": {"gpu0": {"memory": "8GiB"}},
        "models": [demo_model("gemma", gpu_layers=99)],
    }
    with CorralServer(config, tmp_path) as server:
        body = {"model": "gemma", "prompt": "Hi", "max_tokens": 2}
        answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=180)
        assert answer.status_code == 200, answer.text
        ps = httpx.get(f"{server.url}/api/ps", timeout=5).json()["models"][0]
        log = server.log()
    assert ps["runs_on"] == ["cpu"] and ps["size_vram"] == 0
    # This build has RPC: it counts 19/19 layers offloaded, and allocates them on the CPU.
    assert (
        "gemma: asked for gpu_layers: 99; it runs on the CPU: llama-server offloaded 19/19"
        in (ps["warning"])
    )
    assert f"WARNING {ps['warning']}" in log
    assert "lists no GPU" in log  # and said so at start
