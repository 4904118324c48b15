"""Where a loaded model really runs, read from its child's log, against what its config asked.

Owns reading the lines llama-server logs while it loads (``offloaded N/M layers to GPU``,
the buffer sizes per device, "no usable GPU found") into the devices the model runs on, and
the warning when that is not what its config asked for: the GPU asked for (``gpu_layers``,
or a GPU it may use, declared in ``devices`` or found on the machine) and the CPU got. It
reads no process and decides nothing; ``loads`` calls it once a child is ready.

The lines, from llama.cpp's common/arg.cpp and src/llama-model.cpp (the layer count and the
buffers only at ``--log-verbosity 4``)::

    warning: no usable GPU found, --gpu-layers option will be ignored
    load_tensors: offloaded 19/19 layers to GPU
    load_tensors:        CUDA0 model buffer size =   235.16 MiB

A build without a GPU backend but with RPC still logs "offloaded 19/19 layers to GPU" (its
``llama_supports_gpu_offload`` counts RPC), and then allocates every buffer on the CPU: the
buffers say where the model is, the count only how many layers were meant to move.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import devices, learned

_OFFLOADED = re.compile(r"offloaded (?P<on>\d+)/(?P<of>\d+) layers to GPU")
#: An rpc-server's buffer, named after its address: ``RPC0[10.0.0.2:50052] model buffer``.
_RPC = re.compile(r"\sRPC\d*\[(?P<address>[^\]\s]+)\]\s+(?:model|KV|RS|output|compute) buffer")
NO_GPU = "no usable GPU found"
_FIX = "set llama_server to a GPU build (NixOS: services.corral.acceleration)"
#: The lines ``runs_on`` reads, beyond the buffer sizes: the output keeps them past its ring.
MARKERS = (" buffer size =", "layers to GPU", NO_GPU)


@dataclass(frozen=True)
class RunsOn:
    """What a ready child runs on: devices holding its layers, the layer count on the GPUs
    (None when llama-server logged none), its buffers per device, and a warning when the
    config asked for something else."""

    devices: list[str]
    layers: tuple[int, int] | None = None
    by_device: dict[str, int] = field(default_factory=dict)
    warning: str | None = None

    def public(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "gpu_layers": f"{self.layers[0]}/{self.layers[1]}" if self.layers else None,
            "by_device": self.by_device,
        }


def watched(model: ModelConfig, devices_declared: bool) -> bool:
    """Whether ``model``'s child logs where it runs: verbosity 4, measured here at ~200 lines
    a load and 35 a request instead of 7 (~3 µs of corral's CPU each), so only where a GPU
    is in play: ``devices`` declared (whose budgets learn sizes too), GPU layers asked for,
    rpc workers, or a GPU device node here that llama-server's default would use. Elsewhere
    the model runs on the CPU, and ``runs_on`` says so without reading a line."""
    if model.cmd is not None:
        return False
    if devices_declared or model.rpc:
        return True
    if model.gpu_layers == 0:
        return False
    return (model.gpu_layers or 0) > 0 or devices.gpu_here()


def keeps(line: str) -> bool:
    """True for a line ``read`` needs (the child's output keeps these however far back)."""
    return any(marker in line for marker in MARKERS)


def read(model: ModelConfig, lines: Iterable[str], gpus: Sequence[str]) -> RunsOn | None:
    """What ``lines`` (a ready child's load) say it runs on; None when they say nothing (a
    ``cmd`` server, or llama-server below verbosity 4). ``gpus``: the GPUs this machine
    has or the config declares (``gpu0`` …), in CUDA's order."""
    kept = [line for line in lines if keeps(line)]
    buffers = learned.buffers(kept)
    if model.cmd is not None or not buffers:
        return None
    visible = devices.visible_gpus(model, gpus)
    by_device = learned.by_device(buffers, visible)
    found = [_OFFLOADED.search(line) for line in kept]
    counts = [(int(m["on"]), int(m["of"])) for m in found if m is not None]
    layers = counts[-1] if counts else None
    # Layers on an rpc-server are offloaded too (its memory is another machine's: not here).
    remote = sorted({f"rpc:{m['address']}" for m in map(_RPC.search, kept) if m is not None})
    on_gpu = sorted(d for d, size in by_device.items() if d != devices.CPU and size) + remote
    # The CPU runs layers unless every one went to a GPU (token embeddings always stay in
    # a CPU buffer, so a CPU buffer alone says nothing).
    all_on_gpu = bool(on_gpu) and layers is not None and layers[0] >= layers[1]
    ran = on_gpu + ([] if all_on_gpu else [devices.CPU])
    no_gpu = any(NO_GPU in line for line in kept)
    warning = _warning(model, visible, ran, on_gpu, layers, no_gpu)
    return RunsOn(ran, layers, by_device, warning)


def asked(model: ModelConfig, gpus: Sequence[str]) -> str | None:
    """What in the config asks for the GPU, in its words; None: nothing does."""
    if model.gpu_layers == 0:
        return None
    if model.gpu_layers is not None and model.gpu_layers > 0:
        return f"gpu_layers: {model.gpu_layers}"
    visible = devices.visible_gpus(model, gpus)
    return f"the GPU ({', '.join(visible)})" if visible else None


def _warning(
    model: ModelConfig,
    gpus: Sequence[str],
    ran: Sequence[str],
    on_gpu: Sequence[str],
    layers: tuple[int, int] | None,
    no_gpu: bool,
) -> str | None:
    wanted = asked(model, gpus)
    if wanted is None:
        return None
    head = f"{model.name}: asked for {wanted}"
    if not on_gpu:
        if no_gpu:
            why = (
                f"llama-server says '{NO_GPU}': it was built without a GPU backend "
                f"(CUDA, ROCm, Vulkan); {_FIX}"
            )
        elif layers is not None and layers[0] > 0:
            why = (
                f"llama-server offloaded {layers[0]}/{layers[1]} layers but allocated no GPU "
                f"buffer: it has no GPU backend (only the CPU, or RPC); {_FIX}"
            )
        else:
            why = (
                "llama-server put no layer on a GPU: its build has no GPU backend, or the GPU "
                "is hidden from it (CUDA_VISIBLE_DEVICES in env); `corral check` lists the "
                "devices it sees"
            )
        return f"{head}; it runs on the CPU: {why}"
    if layers is None:
        return None
    on, of = layers
    expected = of if model.gpu_layers is None or model.gpu_layers < 0 else min(model.gpu_layers, of)
    if on >= expected:
        return None
    return (
        f"{head}; {on}/{of} layers run on {', '.join(on_gpu)}, the rest on the CPU: likely "
        f"too little free GPU memory (llama-server fits what it can); free the GPU, or lower "
        f"context_size or gpu_layers"
    )
