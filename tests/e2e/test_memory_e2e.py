"""The memory estimate against what the real llama-server allocates for the demo model.

The figures come from the child's own buffer-size lines (``--log-verbosity 4``), parsed by
the same code that learns measurements at run time; the bar is 15 %.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import estimate, gguf_facts, learned
from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e

MIB = 1024**2


def measure(llama_server: str, model_file: Path, context_size: int, log: Path) -> dict[str, int]:
    """Load the model on the CPU, wait until it listens, stop it; bytes per buffer."""
    argv = [
        llama_server,
        *("-m", str(model_file), "--host", "127.0.0.1", "--port", str(free_port())),
        *("-c", str(context_size), "-ngl", "0", "--log-verbosity", "4"),
    ]
    with log.open("w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: "listening on" in log.read_text(errors="replace"),
            timeout=180,
            what="llama-server to load the demo model",
        )
    finally:
        child.terminate()
        child.wait(timeout=30)
    return learned.buffers(log.read_text(errors="replace").splitlines())


@pytest.mark.parametrize("context_size", [4096, 16384])
def test_estimate_within_15_percent_of_llama_servers_buffers(
    llama_server: str, models_dir: Path, tmp_path: Path, context_size: int
) -> None:
    model_file = models_dir / "gemma-3-270m-q4_k_m.gguf"
    found = measure(llama_server, model_file, context_size, tmp_path / "llama-server.log")
    measured = learned.by_device(found)
    assert set(measured) == {"cpu"}, found
    config = ModelConfig(name="gemma", path=model_file, context_size=context_size, gpu_layers=0)
    estimated = estimate.estimate(gguf_facts.read(model_file), estimate.launch(config), {})
    ratio = estimated.total / measured["cpu"]
    print(
        f"ctx={context_size}: estimated {estimated.total / MIB:.1f} MiB "
        f"({', '.join(f'{k} {v / MIB:.1f}' for k, v in estimated.parts.items())}), "
        f"llama-server {measured['cpu'] / MIB:.1f} MiB "
        f"({', '.join(f'{k} {v / MIB:.2f}' for k, v in sorted(found.items()))}), "
        f"ratio {ratio:.3f}"
    )
    assert 0.85 <= ratio <= 1.15
