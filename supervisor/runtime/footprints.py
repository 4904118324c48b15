"""Each model's memory as the pool uses it: the budgets, and one figure per model.

Owns the budgets detected once, at start (``devices``; declared ones win), whether they are
in force (``devices`` declared in the config), each model's figure (declared > measured >
estimated, cached per model) and learning: a ready child's buffer-size lines become the
measured figure, kept in ``measured.json`` under the launch id ``corral check --fit`` reads.
It decides nothing (``scheduler``) and starts nothing (``pool``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config
from corral.supervisor.runtime.child import command
from corral.supervisor.runtime.memory import devices, estimate, gguf_facts, learned
from corral.supervisor.runtime.memory.estimate import Footprint

log = logging.getLogger("corral")


def footprint_of(
    model: ModelConfig, budgets: Mapping[str, int], measured: learned.Measurements
) -> tuple[Footprint | None, str]:
    """The figure to trust for ``model``, or None and why there is none."""
    gpus = devices.gpu_shares(model, budgets)
    order = [*gpus, devices.CPU]
    if model.memory is not None:
        return estimate.choose(model.memory, None, None, order), ""
    if model.cmd is not None:
        return None, "skipped: a custom cmd, not llama-server (declare its memory to count it)"
    path = model.path
    if path is None or not path.is_file():
        return None, f"skipped: {path} is not available here (not estimated)"
    try:
        facts = gguf_facts.read(path)
    except gguf_facts.GGUFError as exc:
        return None, f"skipped: {exc}"
    estimated = estimate.estimate(facts, estimate.launch(model), gpus)
    return estimate.choose(None, measured.get(launch_of(model)), estimated, order), ""


def launch_of(model: ModelConfig) -> str:
    """The id a measurement of ``model`` is kept under (``learned.launch_id``)."""
    return learned.launch_id(model.name, command.launch_key(model), _size(model.path))


class Footprints:
    """The budgets in force and every model's figure, for one config."""

    def __init__(self, config: Config, detected: Mapping[str, int] | None = None) -> None:
        #: Budgets limit loads only when the config declares ``devices``; otherwise the
        #: figures are shown, and groups alone decide (one model at a time by default).
        self.in_force = bool(config.devices)
        found = devices.detect() if detected is None else detected
        self.budgets = devices.budgets(config, found)
        self.measured = learned.Measurements(learned.state_dir(config.state_dir, os.environ))
        self._figures: dict[str, Footprint | None] = {}

    @property
    def gpus(self) -> list[str]:
        """The GPUs with a budget (declared, or detected through NVML), in index order."""
        return [d for d in self.budgets if d != devices.CPU]

    def of(self, model: ModelConfig) -> Footprint | None:
        """``model``'s figure, worked out on first use (a GGUF header walk) and kept."""
        if model.name not in self._figures:
            self._figures[model.name] = footprint_of(model, self.budgets, self.measured)[0]
        return self._figures[model.name]

    def need(self, model: ModelConfig) -> dict[str, int]:
        """Bytes per device ``model`` needs; empty (not limited) when nothing is known."""
        found = self.of(model)
        return dict(found.by_device) if found is not None else {}

    def learn(self, model: ModelConfig, lines: Sequence[str]) -> None:
        """Keep what a ready child logged it allocated; a declared figure still wins."""
        gpus = devices.visible_gpus(model, [d for d in self.budgets if d != devices.CPU])
        figure = learned.by_device(learned.buffers(lines), gpus)
        if not figure or model.cmd is not None:
            return
        self.measured.put(launch_of(model), figure)
        if model.memory is None:
            self._figures[model.name] = Footprint(figure, estimate.Source.MEASURED)
        log.info("%s: measured %d MiB (%s)", model.name, sum(figure.values()) >> 20, figure)

    def forget(self, names: Sequence[str]) -> None:
        """A reload changed these models: work their figures out afresh."""
        for name in names:
            self._figures.pop(name, None)


def _size(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path is not None else None
    except OSError:
        return None
