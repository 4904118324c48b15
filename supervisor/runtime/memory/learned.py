"""Memory measured from llama-server's own log, kept on disk so it outlives a restart.

Owns reading the buffer-size lines a child logs while it loads, turning them into bytes per
device, and the small JSON file (``measured.json`` in the state directory) that keeps one
figure per launch. It does not decide when to measure (the pool does, once a child is ready)
nor which figure to trust (``memory.choose``).

The lines, from llama.cpp's src/llama-model.cpp, llama-kv-cache.cpp and llama-context.cpp,
as this build prints them (only at ``--log-verbosity 4``; the default 3 hides them)::

    load_tensors:   CPU_Mapped model buffer size =   235.16 MiB
    llama_context:        CPU  output buffer size =     4.00 MiB
    llama_kv_cache:        CPU KV buffer size =    12.00 MiB
    sched_reserve:        CPU compute buffer size =    24.78 MiB
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

_BUFFER = re.compile(
    r"\s(?P<buffer>[A-Za-z][\w-]*)\s+(?P<kind>model|KV|RS|output|compute) buffer size =\s*"
    r"(?P<mib>\d+(?:\.\d+)?) MiB"
)
# A GPU backend's buffer: CUDA0, ROCm1, Vulkan0, SYCL0 … (index among the visible devices).
_GPU_BUFFER = re.compile(r"^(?:CUDA|ROCm|HIP|Vulkan|SYCL|MUSA|CANN)(?P<index>\d+)")

FILE_NAME = "measured.json"
_VERSION = 1


def buffers(lines: Iterable[str]) -> dict[str, int]:
    """Bytes per buffer name (``CPU_Mapped``, ``CUDA0`` …) over every buffer-size line."""
    found: dict[str, int] = {}
    for line in lines:
        match = _BUFFER.search(line)
        if match is not None:
            size = int(float(match["mib"]) * 1024 * 1024)
            found[match["buffer"]] = found.get(match["buffer"], 0) + size
    return found


def by_device(found: Mapping[str, int], visible_gpus: Sequence[str] = ()) -> dict[str, int]:
    """Buffers summed per corral device: GPU buffers by index into ``visible_gpus``, the
    rest (``CPU``, ``CPU_Mapped``, ``CUDA_Host`` …) on ``cpu``.

    With mmap, a ``CPU_REPACK`` buffer holds a re-laid-out copy of tensors whose pages also
    sit in ``CPU_Mapped``; those pages are clean page cache the kernel takes back, so the
    copy is not counted twice.
    """
    mapped = any(name.endswith("_Mapped") for name in found)
    total: dict[str, int] = {}
    for name, size in found.items():
        if mapped and name.endswith("_REPACK"):
            continue
        gpu = _GPU_BUFFER.match(name)
        if gpu is None:
            device = "cpu"
        else:
            index = int(gpu["index"])
            device = visible_gpus[index] if index < len(visible_gpus) else f"gpu{index}"
        total[device] = total.get(device, 0) + size
    return total


def launch_id(name: str, key: object, file_size: int | None) -> str:
    """One measurement per launch: the model's name, what shapes its child, its file's size.

    A changed context, offload or file (a new download) gives a new id, so a stale figure
    is never used for a launch it does not describe.
    """
    digest = hashlib.sha256(repr((key, file_size)).encode()).hexdigest()[:16]
    return f"{name}@{digest}"


def state_dir(configured: Path | None, env: Mapping[str, str]) -> Path:
    """``state_dir`` from the config, else systemd's STATE_DIRECTORY, else the XDG place."""
    if configured is not None:
        return configured
    if env.get("STATE_DIRECTORY"):
        # systemd joins several StateDirectory= entries with ':'; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "/tmp")) / ".local" / "state")
    return Path(base) / "corral"


class Measurements:
    """The measured figures, by launch id; read once, written whole on every change."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        self._figures: dict[str, dict[str, int]] = self._read()

    def get(self, launch: str) -> dict[str, int] | None:
        return self._figures.get(launch)

    def put(self, launch: str, figure: Mapping[str, int]) -> None:
        """Keep ``figure`` for ``launch``; a write failure is logged, never raised: losing
        a measurement costs an estimate next time, not a request now."""
        if not figure or self._figures.get(launch) == dict(figure):
            return
        self._figures[launch] = dict(figure)
        try:
            self._write()
        except OSError as exc:
            _log.warning("cannot keep measured memory in %s: %s", self.path, exc)

    def _read(self) -> dict[str, dict[str, int]]:
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            _log.warning("ignoring %s (%s); memory will be estimated again", self.path, exc)
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        if data.get("version") != _VERSION or not isinstance(models, dict):
            return {}
        return {
            launch: {str(d): int(b) for d, b in figure.items()}
            for launch, figure in models.items()
            if isinstance(figure, dict)
        }

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _VERSION, "models": self._figures}, indent=2, sort_keys=True)
        # Written aside, then renamed: a crash mid-write leaves the old file, never half of one.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".measured-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


_OUT_OF_MEMORY = re.compile(
    r"out of memory|unable to allocate|failed to allocate|cannot allocate memory|bad_alloc"
    r"|ErrorOutOfDeviceMemory",
    re.IGNORECASE,
)


def out_of_memory(lines: Iterable[str]) -> bool:
    """True when a failed child's log says an allocation failed (CUDA, Vulkan, host).

    A child the kernel's OOM killer ended logs nothing: its exit by SIGKILL says it.
    """
    return any(_OUT_OF_MEMORY.search(line) for line in lines)
