"""What corral warns of before a model runs: no chat template, a context over the one the
model was trained with, a llama-server without the GPU backend the config or the machine has.

Owns when each warning applies and its words (the model's name, what is wrong, the setting
to change). It reads GGUF headers (``gguf_info``), the template rule (``chat_templates``)
and the devices the binary lists (``backends``); it starts no model. ``corral check`` prints
these; ``corral serve`` logs them at start, and for each model a reload adds (discovered in
``models_path``, or pulled).
"""

from __future__ import annotations

import asyncio
import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corral.generator.model_settings import ModelConfig
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.runtime.child import backends, command
from corral.supervisor.runtime.memory import devices, gguf_info

log = logging.getLogger("corral")

#: Seconds from ``corral serve``'s start to its warnings (``pool``): a first request, as a
#: socket-activated start has, has begun its load by then, and the checks wait for it.
AFTER_START_S = 1.0
#: The built-in template to suggest for a GGUF without one, by its architecture's prefix.
_SUGGESTED = {"gemma": "gemma", "qwen": "chatml"}
#: NVIDIA's device nodes: a GPU this machine has even where NVML is not installed.
NVIDIA_NODES = "/dev/nvidia[0-9]*"


def model_warnings(model: ModelConfig) -> list[str]:
    """What is wrong with ``model``'s file and settings; empty for a ``cmd`` model or a
    file that is not there (yet) or cannot be read (its load says why)."""
    if model.cmd is not None or model.path is None or not model.path.is_file():
        return []
    try:
        info = gguf_info.read(model.path)
    except (OSError, gguf_info.GGUFError):
        return []
    return [w for w in (_template(model, info), _context(model, info)) if w is not None]


def _template(model: ModelConfig, info: gguf_info.GGUFInfo) -> str | None:
    chosen = any(a in ("--chat-template", "--chat-template-file") for a in model.args)
    if model.chat_template or chosen or info.chat_template is not None:
        return None
    assert model.path is not None
    suggested = next((v for k, v in _SUGGESTED.items() if info.architecture.startswith(k)), None)
    setting = f"chat_template: {suggested}" if suggested else "chat_template"
    where, go = "", ""
    if model.ollama is not None:  # a model of Ollama's store: the entry that can set it
        where = f" in an entry `name: {model.name}`, `path: ollama:{model.ollama.name}`"
        if model.ollama.go_template:
            go = " (Ollama's Go template is not run: llama-server cannot)"
    return (
        f"{model.name}: no chat template: its GGUF ({model.path.name}) has none{go} and "
        "chat_template is unset, so llama-server falls back to ChatML, and a model trained "
        f"on another format answers nonsense; set {setting}{where} (a llama.cpp built-in "
        "name, or a Jinja file); `corral check --probe` tests it"
    )


def _context(model: ModelConfig, info: gguf_info.GGUFInfo) -> str | None:
    trained = info.arch_value("context_length")
    if not isinstance(trained, int) or model.context_size <= trained:
        return None
    return (
        f"{model.name}: context_size {model.context_size} is over the {trained} tokens it "
        f"was trained with ({info.architecture}.context_length); past those its answers "
        f"degrade; set context_size to {trained} or less"
    )


@dataclass(frozen=True)
class GpuCheck:
    """What the binary says it can use (lines to show) and the warnings that follow."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def machine_gpus(nodes: str = NVIDIA_NODES) -> list[str]:
    """The GPUs this machine has: NVML's, else NVIDIA's device nodes (``gpu0`` …)."""
    found = sorted(devices.gpu_memory(devices.import_nvml()))
    if found:
        return found
    indexes = sorted(int(Path(p).name.removeprefix("nvidia")) for p in glob.glob(nodes))
    return [f"gpu{i}" for i in indexes]


def gpu_check(config: Config, machine: Sequence[str]) -> GpuCheck:
    """Ask llama-server for its devices when a GPU is declared (``devices``) or ``machine``
    has one; warn, naming the models that asked for one, when it lists none."""
    declared = [d for d in config.devices if d != devices.CPU]
    gpus = declared or list(machine)
    wanting = [m.name for m in config.models if m.cmd is None and m.gpu_layers != 0]
    if not gpus or not wanting:
        return GpuCheck()
    try:
        binary = command.resolve_llama_server(config.llama_server)
    except ConfigError as exc:
        return GpuCheck(warnings=[f"cannot ask llama-server for its devices: {exc}"])
    listing = backends.list_devices(binary)
    if listing.error is not None:
        return GpuCheck(warnings=[f"cannot ask llama-server for its devices: {listing.error}"])
    shown = listing.devices or ["(none)"]
    lines = [f"llama-server {binary} lists these devices:", *(f"  {d}" for d in shown)]
    if listing.gpus:
        return GpuCheck(lines)
    where = (
        f"the config declares devices {', '.join(declared)}"
        if declared
        else f"this machine has {', '.join(machine)}"
    )
    return GpuCheck(
        lines,
        [
            f"{', '.join(wanting)}: {where}, but llama-server {binary} lists no GPU: it was "
            "built without a GPU backend (CUDA, ROCm, Vulkan), so these models run on the "
            "CPU; set llama_server to a GPU build (NixOS: services.corral.acceleration)"
        ],
    )


def config_warnings(config: Config, machine: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every warning for ``config``: the binary's device lines, and the warnings."""
    gpu = gpu_check(config, machine)
    found = [w for m in config.models for w in model_warnings(m)]
    return gpu.lines, found + gpu.warnings


def check_report(config: Config) -> list[str]:
    """``corral check``'s hook: lines to print, the warnings marked (for this machine)."""
    lines, warnings = config_warnings(config, machine_gpus())
    return lines + [f"warning: {w}" for w in warnings]


async def log_warnings(config: Config, models: Sequence[ModelConfig], gpu: bool) -> None:
    """Log ``models``' warnings, and with ``gpu`` the binary's, off the loop (a first header
    read takes a moment; ``--list-devices`` loads the GPU backends)."""

    def found() -> list[str]:
        warnings = [w for m in models for w in model_warnings(m)]
        return warnings + (gpu_check(config, machine_gpus()).warnings if gpu else [])

    for warning in await asyncio.to_thread(found):
        log.warning("%s", warning)
