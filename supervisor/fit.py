"""``corral check``'s memory report and ``--fit``: will each model fit its declared budget?

Owns the report (each model's figure and where it comes from: declared, measured or
estimated) and the build-time verdict: a model that cannot fit a declared device budget on
its own, or persistent models that cannot fit together, are problems. It reads GGUF headers
and the measurements file, and starts nothing. The generator's ``check`` calls it through
a hook (``MEMORY_CHECK``), because the generator may not import the supervisor.

At build time only declared budgets count: detecting the build machine's memory would
judge the wrong machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from corral.generator.settings import Config
from corral.generator.sizes import format_size
from corral.supervisor.runtime.footprints import footprint_of
from corral.supervisor.runtime.memory import devices, learned
from corral.supervisor.runtime.memory.estimate import Footprint


def memory_check(config: Config, fit: bool) -> tuple[list[str], list[str]]:
    """Lines to print for every model, and (with ``fit``) the problems found."""
    budgets = devices.budgets(config, {}) if config.devices else {}
    measured = learned.Measurements(learned.state_dir(config.state_dir, os.environ))
    lines = ["memory:"]
    footprints: dict[str, Footprint] = {}
    for model in config.models:
        footprint, note = footprint_of(model, budgets, measured)
        if footprint is None:
            lines.append(f"  {model.name}: {note}")
            continue
        footprints[model.name] = footprint
        lines.append(f"  {model.name}: {describe(footprint)}")
    if not fit:
        return lines, []
    if not budgets:
        lines.append("note: no devices declared; --fit has no budget to check against")
        return lines, []
    return lines, problems(config, footprints, budgets)


def describe(footprint: Footprint) -> str:
    """``310.0 MiB (estimated: cpu 310.0 MiB; weights 235.2 MiB, kv 49.5 MiB, …)``."""
    where = ", ".join(f"{d} {format_size(b)}" for d, b in sorted(footprint.by_device.items()))
    text = f"{format_size(footprint.total)} ({footprint.source}: {where}"
    if footprint.parts:
        text += "; " + ", ".join(f"{k} {format_size(v)}" for k, v in footprint.parts.items())
    return text + ")"


def problems(
    config: Config, footprints: Mapping[str, Footprint], budgets: Mapping[str, int]
) -> list[str]:
    """Models too big for a declared budget alone, and persistent sets too big together."""
    found = []
    for index, model in enumerate(config.models):
        footprint = footprints.get(model.name)
        if footprint is None:
            continue
        for device, need in sorted(footprint.by_device.items()):
            if device in budgets and need > budgets[device]:
                found.append(
                    f"models[{index}] ({model.name}): needs {format_size(need)} on {device} "
                    f"({footprint.source}), more than its budget of "
                    f"{format_size(budgets[device])} ({_budget_of(config, device)})"
                )
    # Persistent models are never evicted, so all of them may be loaded at once.
    groups = sorted(name for name, group in config.groups.items() if group.persistent)
    members = list(
        dict.fromkeys(m for g in groups for m in config.groups[g].members if m in footprints)
    )
    for device, budget in sorted(budgets.items()):
        held = {m: footprints[m].by_device.get(device, 0) for m in members}
        if len([b for b in held.values() if b]) > 1 and sum(held.values()) > budget:
            each = ", ".join(f"{m} {format_size(b)}" for m, b in held.items() if b)
            found.append(
                f"groups {', '.join(groups)}: persistent models need "
                f"{format_size(sum(held.values()))} together on {device} ({each}), more than "
                f"its budget of {format_size(budget)} ({_budget_of(config, device)})"
            )
    return found


def _budget_of(config: Config, device: str) -> str:
    declared = config.devices[device].memory
    return f"devices.{device}.memory {format_size(declared)} less memory_margin"
