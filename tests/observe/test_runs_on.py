"""What a model really runs on, after its load: a real ``corral serve`` whose llama-server is
tests/fake_llama_server.py, playing a CPU-only build, a CUDA build that offloads every layer
and one that offloads part (llama.cpp's own log lines). ``/status``, ``/running`` and
``/api/ps`` say ``runs_on``; where it is not what the config asked, a ``warning`` there, on
``/events`` and in the log. And the warnings ``corral serve`` logs at start."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from corral.supervisor.runtime.memory import learned
from tests import fake_llama_server
from tests.gguf_files import write_gguf
from tests.observe.helpers import Follower
from tests.support import CorralServer, corral_bin, wait_until


def serve(tmp: Path, build: str, chat_template: str | None = "{{ messages }}") -> CorralServer:
    model_file = write_gguf(tmp / "tiny.gguf", chat_template=chat_template, context_length=8192)
    config: dict[str, Any] = {
        "llama_server": str(fake_llama_server.binary(tmp, build)),
        "state_dir": str(tmp / "state"),
        "devices": {"gpu0": {"memory": "8GiB"}},
        "models": [{"name": "m", "path": str(model_file), "gpu_layers": 99, "context_size": 16384}],
    }
    return CorralServer(config, tmp)


def load(server: CorralServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text


def views(server: CorralServer) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The model as /status, /running and /api/ps show it."""
    status = httpx.get(f"{server.url}/status", timeout=5).json()["models"][0]
    running = server.running()[0]
    ps = httpx.get(f"{server.url}/api/ps", timeout=5).json()["models"][0]
    return status, running, ps


def gpu_bytes(build: str) -> int:
    lines = fake_llama_server.load_lines(build, "99")
    return learned.by_device(learned.buffers(lines), ["gpu0"]).get("gpu0", 0)


def test_a_cpu_build_says_the_model_runs_on_the_cpu_and_why(tmp_path: Path) -> None:
    with serve(tmp_path, "cpu") as server, Follower(server.url) as follower:
        load(server)
        wait_until(lambda: "warning" in follower.kinds("m"), 10, "the warning event")
        status, running, ps = views(server)
        page = httpx.get(f"{server.url}/ui", timeout=5).text
        argv = [corral_bin(), "status", "--url", server.url]
        printed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        log = server.log()
    assert "asked for gpu_layers: 99; it runs on the CPU" in page  # the status page
    assert f"\nwarning: {status['warning']}" in printed.stdout  # and `corral status`
    for shown in (status, running, ps):
        assert shown["runs_on"] == ["cpu"], shown
        assert shown["warning"].startswith("m: asked for gpu_layers: 99; it runs on the CPU")
        assert "no usable GPU found" in shown["warning"]
    assert ps["size_vram"] == 0
    event = next(e for e in follower.events if e["kind"] == "warning")
    assert event["text"] == status["warning"]
    assert f"WARNING {status['warning']}" in log


def test_a_cuda_build_runs_on_the_gpu_and_ps_reports_its_measured_part(tmp_path: Path) -> None:
    with serve(tmp_path, "cuda") as server:
        load(server)
        status, running, ps = views(server)
        log = server.log()
    for shown in (status, running, ps):
        assert shown["runs_on"] == ["gpu0"] and shown["warning"] is None, shown
    assert ps["size_vram"] == gpu_bytes("cuda") > 0
    assert "runs on the CPU" not in log and "layers run on" not in log


def test_a_partial_offload_runs_on_both_with_a_warning(tmp_path: Path) -> None:
    with serve(tmp_path, "cuda-partial") as server, Follower(server.url) as follower:
        load(server)
        wait_until(lambda: "warning" in follower.kinds("m"), 10, "the warning event")
        status, running, ps = views(server)
    for shown in (status, running, ps):
        assert shown["runs_on"] == ["gpu0", "cpu"], shown
        assert "10/19 layers run on gpu0, the rest on the CPU" in shown["warning"]
    assert ps["size_vram"] == gpu_bytes("cuda-partial") < gpu_bytes("cuda")


def test_serve_logs_at_start_what_check_warns_of(tmp_path: Path) -> None:
    with serve(tmp_path, "cpu", chat_template=None) as server:
        wait_until(lambda: "lists no GPU" in server.log(), 20, "the GPU backend warning")
        wait_until(lambda: "no chat template" in server.log(), 20, "the template warning")
        log = server.log()
    assert "WARNING m: no chat template: its GGUF (tiny.gguf) has none" in log
    assert "WARNING m: context_size 16384 is over the 8192 tokens it was trained with" in log
    assert "WARNING m: the config declares devices gpu0, but llama-server" in log
