"""Which devices a llama-server binary can use, asked of the binary itself.

Owns running ``llama-server --list-devices`` (it loads its backends, prints the devices
that are not the CPU and exits; no model needed) and reading its answer, as llama.cpp's
common/arg.cpp prints it::

    Available devices:
      CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80577 MiB free)

or ``  (none)`` for a build with no GPU backend. It decides nothing about what to warn of
(``checks``) and finds no binary (``command``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

#: Seconds to wait: loading the CUDA backend takes a second or two, a wedged driver longer.
TIMEOUT = 30.0
_DEVICE = re.compile(r"^\s+(?P<name>[A-Za-z]+\d+): (?P<description>.*)$")


@dataclass(frozen=True)
class Listing:
    """The devices a binary lists (``CUDA0: NVIDIA …``), or why it could not be asked."""

    devices: list[str]
    error: str | None = None

    @property
    def gpus(self) -> list[str]:
        """The listed devices that are GPUs (RPC servers are listed too, and are not)."""
        return [d for d in self.devices if not d.startswith("RPC")]


def parse(text: str) -> list[str]:
    """The device lines after ``Available devices:``, as ``NAME: description``."""
    _, found, after = text.partition("Available devices:")
    if not found:
        return []
    return [f"{m['name']}: {m['description']}" for m in map(_DEVICE.match, after.splitlines()) if m]


def list_devices(binary: str, timeout: float = TIMEOUT) -> Listing:
    """Ask ``binary`` for its devices; an error text instead when it cannot answer."""
    try:
        done = subprocess.run(
            [binary, "--list-devices"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Listing([], f"cannot run {binary} --list-devices: {exc}")
    if done.returncode != 0 or "Available devices:" not in done.stdout:
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return Listing([], f"{binary} --list-devices exited with {done.returncode}: {last}")
    return Listing(parse(done.stdout))
