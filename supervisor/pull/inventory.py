"""What a models folder holds, for ``corral pull --list``.

Owns the report: every ``*.gguf`` (the files discovery serves) with its size, unfinished
``.gguf.part`` downloads, and the config's models whose file is not there yet. It downloads
nothing (see ``download``) and decides nothing about serving (see ``corral.generator.loader``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.generator.settings import Config
from corral.supervisor.pull import progress
from corral.supervisor.pull.download import PART


@dataclass(frozen=True)
class Inventory:
    """A models folder: its ``*.gguf`` files, unfinished ``.part``s, and named-but-missing."""

    present: list[tuple[Path, int]]
    partial: list[tuple[Path, int]]
    missing: list[tuple[str, Path]]

    def lines(self, folder: Path) -> list[str]:
        """The ``--list`` report: name and size per file, then each missing model's path."""
        found = [(str(p), progress.human(n)) for p, n in self.present]
        found += [
            (str(p), f"{progress.human(n)} so far, pull again to resume") for p, n in self.partial
        ]
        out = [f"{folder}:", *_columns(found)] if found else [f"{folder}: no .gguf files"]
        if self.missing:
            out.append("named in the config but missing:")
            out += _columns([(name, str(path)) for name, path in self.missing])
        return out


def scan(folder: Path, config: Config | None) -> Inventory:
    """What ``folder`` holds, and which of ``config``'s model files are not there yet."""
    files = sorted(folder.rglob("*.gguf")) if folder.is_dir() else []
    parts = sorted(folder.rglob(f"*.gguf{PART}")) if folder.is_dir() else []
    models = config.models if config is not None else []
    return Inventory(
        present=[(f.relative_to(folder), f.stat().st_size) for f in files if f.is_file()],
        partial=[(f.relative_to(folder), f.stat().st_size) for f in parts if f.is_file()],
        missing=[(m.name, m.path) for m in models if m.path is not None and not m.path.exists()],
    )


def _columns(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows)
    return [f"  {left.ljust(width)}  {right}" for left, right in rows]
