"""Where a run happened: the machine, its load, the llama.cpp build and corral's revision.

Owns reading those facts (from /proc, ``llama-server --version`` and git, read-only); it
measures nothing and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _proc_field(path: str, key: str) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return "unknown"


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name")


def memory_gib() -> float:
    kib = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    return int(kib) / 2**20 if kib.isdigit() else 0.0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def llama_version(binary: str) -> str:
    """The first lines of ``llama-server --version`` (it prints them on stderr)."""
    done = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("version", "built with"))]
    return "; ".join(wanted or lines[-2:])


def corral_revision(repo: Path) -> str:
    """``git rev-parse --short HEAD``, marked when the work tree has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} (with uncommitted changes)" if git("status", "--porcelain") else head


def describe(binary: str, repo: Path) -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{memory_gib():.1f} GiB",
        "llama.cpp": llama_version(binary),
        "corral": corral_revision(repo),
    }
