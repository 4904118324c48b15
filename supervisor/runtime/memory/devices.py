"""Memory budgets per device, and which devices a model's memory lands on.

Owns the budgets (declared in ``devices`` win; otherwise detected once, at start: free GPU
memory through NVML when ``nvidia-ml-py`` is installed, MemAvailable from /proc/meminfo for
the CPU; then less ``memory_margin``), and the GPUs a model uses (``gpu_layers`` and its
``CUDA_VISIBLE_DEVICES``). It does not estimate a model's size (see ``memory``) and decides
nothing about eviction (see ``placement``).

GPU names are ``gpu0``, ``gpu1`` … in NVML's order (PCI bus order). CUDA numbers devices
fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; on machines with mixed cards set that,
or declare the budgets, so that the two agree.
"""

from __future__ import annotations

import functools
import glob
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config

_log = logging.getLogger(__name__)

CPU = "cpu"
MEMINFO = Path("/proc/meminfo")
#: Device nodes of a GPU llama.cpp could use: NVIDIA's, ROCm's, any DRM render node (Vulkan).
GPU_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dri/renderD*")


@functools.cache
def gpu_here() -> bool:
    """Whether this machine has a GPU device node (looked for once per process)."""
    return any(glob.glob(pattern) for pattern in GPU_NODES)


def budgets(config: Config, detected: Mapping[str, int]) -> dict[str, int]:
    """Bytes corral may fill per device: declared, else detected, less the margin (>= 0)."""
    found = dict(detected)
    found.update({name: device.memory for name, device in config.devices.items()})
    return {name: max(size - config.memory_margin, 0) for name, size in sorted(found.items())}


def detect(meminfo: str | None = None, nvml: Any = None) -> dict[str, int]:
    """What this machine has free now: ``cpu`` from /proc/meminfo, ``gpuN`` from NVML.

    ``meminfo`` and ``nvml`` (a ``pynvml``-like module) are for tests; by default the real
    file is read and ``pynvml`` is imported if it is installed.
    """
    found: dict[str, int] = {}
    if meminfo is None:
        try:
            meminfo = MEMINFO.read_text(encoding="ascii")
        except OSError:
            meminfo = ""
    cpu = available_memory(meminfo)
    if cpu is not None:
        found[CPU] = cpu
    found.update(gpu_memory(nvml if nvml is not None else import_nvml()))
    return found


def available_memory(meminfo: str) -> int | None:
    """MemAvailable (else MemTotal) in bytes, from /proc/meminfo's text; None if neither."""
    fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", meminfo, re.MULTILINE))
    for key in ("MemAvailable", "MemTotal"):
        if key in fields:
            return int(fields[key]) * 1024
    return None


def gpu_memory(nvml: Any) -> dict[str, int]:
    """Free bytes per GPU through ``nvml``; empty without it or when the driver is absent."""
    if nvml is None:
        return {}
    try:
        nvml.nvmlInit()
    # NVMLError (no driver, no device) subclasses Exception; an optional probe must never
    # stop corral from starting on a machine without a GPU.
    except Exception as exc:
        _log.info("NVML unavailable (%s): no GPU budget detected", exc)
        return {}
    try:
        count = nvml.nvmlDeviceGetCount()
        return {
            f"gpu{i}": int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).free)
            for i in range(count)
        }
    except Exception as exc:
        _log.warning("NVML failed while reading GPU memory (%s): no GPU budget detected", exc)
        return {}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            _log.debug("nvmlShutdown failed", exc_info=True)


def visible_gpus(model: ModelConfig, gpus: Sequence[str]) -> list[str]:
    """The GPUs ``model``'s child sees, in the order it numbers them (CUDA0, CUDA1 …).

    ``gpu_layers: 0`` keeps it on the CPU. ``CUDA_VISIBLE_DEVICES`` (or HIP's/ROCR's) in its
    ``env`` picks devices by index; an id that is not an index (a UUID) cannot be matched,
    so every GPU is assumed, the larger and safer answer.
    """
    if model.gpu_layers == 0:
        return []
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        if var in model.env:
            ids = [part.strip() for part in model.env[var].split(",") if part.strip()]
            if not ids or ids == ["-1"]:
                return []
            if all(part.isdigit() for part in ids):
                return [f"gpu{part}" for part in ids if f"gpu{part}" in gpus]
            return list(gpus)
    return list(gpus)


def gpu_shares(model: ModelConfig, budget: Mapping[str, int]) -> dict[str, float]:
    """How ``model``'s GPU part splits over its visible GPUs: by budget, as llama.cpp's
    default layer split follows each device's free memory. Empty = CPU only."""
    gpus = [name for name in budget if name != CPU]
    visible = visible_gpus(model, gpus)
    total = sum(budget[name] for name in visible)
    if total <= 0:
        return {name: 1 / len(visible) for name in visible} if visible else {}
    return {name: budget[name] / total for name in visible}


def import_nvml() -> Any:
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return pynvml
