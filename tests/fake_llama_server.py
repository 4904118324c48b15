"""A fake llama-server binary for the GPU cases: llama-server's own arguments in, the lines a
real build logs while it loads out, then it serves as ``fake_upstream`` does.

The lines are copied from llama.cpp: common/arg.cpp (the ``-ngl`` warning of a build without
a GPU, ``--list-devices``), src/llama-model.cpp (``offloaded %d/%d layers to GPU``, the
model buffers), src/llama-context.cpp and src/llama-kv-cache.cpp (the other buffers). As in
llama.cpp, the layer count and the buffers are logged only at ``--log-verbosity 4`` (their
LLAMA_LOG_INFO maps to verbosity 4, the default is 3); the ``-ngl`` warning always is.

The build it plays, env FAKE_LLAMA_BUILD:

- ``cpu``: no GPU backend and no RPC: ``-ngl`` gets "no usable GPU found", no layer count is
  logged, every buffer is the CPU's; ``--list-devices`` lists none.
- ``cuda``: a CUDA build with one GPU that offloads what ``-ngl`` asks (every layer by
  default); ``--list-devices`` lists the GPU.
- ``cuda-partial``: the same build with free memory for only 10 of the 19 layers.

Tests name it as ``llama_server`` through ``binary(folder, build)``, a two-line shell script.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
LAYERS = 19  # Gemma 3 270M: 18 repeating layers and the output layer
FITS = {"cpu": 0, "cuda": LAYERS, "cuda-partial": 10}
GPU = "  CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80577 MiB free)"


def binary(folder: Path, build: str) -> Path:
    """An executable ``llama-server`` in ``folder`` that plays ``build``."""
    path = folder / "llama-server"
    path.write_text(
        f'#!/bin/sh\nFAKE_LLAMA_BUILD={build} exec {sys.executable} {__file__} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    return None


def load_lines(build: str, ngl: str | None) -> list[str]:
    """What llama.cpp logs at verbosity 4 while it loads the model's tensors and context."""
    asked = LAYERS if ngl in (None, "auto", "all", "-1") else int(ngl)
    on = min(asked, FITS[build], LAYERS)
    lines = []
    if build != "cpu":  # llama_supports_gpu_offload(): a GPU backend (or RPC) is built in
        if on > 0:
            lines.append("load_tensors: offloading output layer to GPU")
        repeating = max(min(on, LAYERS - 1) - 1, 0)  # llama-model.cpp: n_gpu less the output layer
        lines.append(f"load_tensors: offloading {repeating} repeating layers to GPU")
        lines.append(f"load_tensors: offloaded {on}/{LAYERS} layers to GPU")
    gpu_mib, cpu_mib = 235.16 * on / LAYERS, 235.16 * (LAYERS - on) / LAYERS + 160.0
    buffers = [("load_tensors", "CPU_Mapped", " model", cpu_mib)]
    if on:
        buffers.insert(0, ("load_tensors", "CUDA0", " model", gpu_mib))
    host = "CUDA_Host" if build != "cpu" else "CPU"
    kv = "CUDA0" if on else "CPU"
    buffers += [
        ("llama_context", host, "  output", 4.0),
        ("llama_kv_cache", kv, " KV", 36.0),
        ("sched_reserve", kv, " compute", 22.28),
    ]
    for func, name, kind, mib in buffers:
        width = 12 if func == "load_tensors" else 10
        lines.append(f"{func}: {name:>{width}}{kind} buffer size = {mib:8.2f} MiB")
    return lines


def main(argv: list[str]) -> None:
    build = os.environ.get("FAKE_LLAMA_BUILD", "cpu")
    if "--list-devices" in argv:
        print("Available devices:")
        print(GPU if build != "cpu" else "  (none)")
        return
    ngl = option(argv, "-ngl", "--gpu-layers", "--n-gpu-layers")
    if ngl is not None and build == "cpu":
        for line in (
            "warning: no usable GPU found, --gpu-layers option will be ignored",
            "warning: one possible reason is that llama.cpp was compiled without GPU support",
            "warning: consult docs/build.md for compilation instructions",
        ):
            print(line, file=sys.stderr)
    verbosity = int(option(argv, "-lv", "--verbosity", "--log-verbosity") or 3)
    if verbosity >= 4:
        for line in load_lines(build, ngl):
            print(f"0.00.862.863 I {line}", file=sys.stderr)
    sys.stderr.flush()
    port = option(argv, "--port") or "8080"
    host = option(argv, "--host") or "127.0.0.1"
    fake = [sys.executable, str(HERE / "fake_upstream.py"), "--port", port, "--host", host]
    os.execv(sys.executable, fake)


if __name__ == "__main__":
    main(sys.argv[1:])
