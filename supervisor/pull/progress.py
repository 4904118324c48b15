"""Showing a download's progress: tqdm's bar when tqdm is installed, else a plain stderr line.

Owns only the drawing, and the human-readable sizes it uses. It does not know where the
bytes come from or go (see ``download``). tqdm stays optional so that corral's dependencies stay
light; the plain line is what a NixOS service log gets anyway.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    """What a download reports to: bytes as they arrive, then the end."""

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


#: (file name, total bytes if known, bytes already there) -> a Progress.
ProgressFactory = Callable[[str, int | None, int], Progress]


def make(name: str, total: int | None, initial: int) -> Progress:
    """tqdm's bar if tqdm is importable, else ``Line`` on stderr."""
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return Line(name, total, initial, sys.stderr)
    bar: Progress = tqdm.tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
    )
    return bar


def human(size: float) -> str:
    """``265_000_000`` -> ``252.7 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Line:
    """``name: 12.0 MiB of 252.7 MiB (4%), 8.1 MiB/s``, redrawn in place on a terminal.

    Off a terminal (a systemd journal, a CI log) carriage returns would pile up into one
    endless line, so there it prints a new line at each tenth of the download instead.
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        initial: int,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.total = total
        self.done = initial
        self._initial = initial
        self._stream = stream
        self._clock = clock
        self._tty = stream.isatty()
        self._started = self._last = clock()
        self._tenth = self._tenths()
        self._shown = initial

    def update(self, n: int) -> None:
        self.done += n
        now = self._clock()
        if self._tty and now - self._last >= 0.2:
            self._last = now
            self._show("\r", "")
        elif not self._tty and self._tenths() > self._tenth:
            self._tenth = self._tenths()
            self._show("", "\n")

    def close(self) -> None:
        if self._tty:
            self._show("\r", "\n")
        elif self.done != self._shown:
            # An interrupted or unknown-size download still says how far it got.
            self._show("", "\n")

    def text(self) -> str:
        elapsed = self._clock() - self._started
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        if self.total:
            amount = f"{human(self.done)} of {human(self.total)} ({self._percent()}%)"
        else:
            amount = human(self.done)
        return f"{self.name}: {amount}, {human(rate)}/s"

    def _show(self, start: str, end: str) -> None:
        self._shown = self.done
        self._stream.write(f"{start}{self.text()}{end}")
        self._stream.flush()

    def _percent(self) -> int:
        return 100 * self.done // self.total if self.total else 0

    def _tenths(self) -> int:
        return self._percent() // 10
