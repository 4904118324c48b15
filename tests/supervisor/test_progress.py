"""Download progress: the plain stderr line, and tqdm when it is installed."""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import pytest

from corral.supervisor.pull import progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_a_line_per_tenth() -> None:
    stream, clock = io.StringIO(), Clock()
    line = progress.Line("m.gguf", 1000, 0, stream, clock)
    for _ in range(20):
        clock.now += 0.5
        line.update(50)
    line.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "m.gguf: 100 B of 1000 B (10%), 100 B/s"
    assert lines[-1] == "m.gguf: 1000 B of 1000 B (100%), 100 B/s"


def test_resumed_download_counts_only_new_bytes_in_its_rate() -> None:
    stream, clock = io.StringIO(), Clock()
    line = progress.Line("m.gguf", 1000, 500, stream, clock)
    clock.now += 1
    line.update(100)
    assert stream.getvalue() == "m.gguf: 600 B of 1000 B (60%), 100 B/s\n"


def test_interrupted_or_unsized_download_says_how_far_it_got() -> None:
    stream = io.StringIO()
    line = progress.Line("m.gguf", None, 0, stream, Clock())
    line.update(300)
    assert stream.getvalue() == ""
    line.close()
    assert stream.getvalue().startswith("m.gguf: 300 B, ")


def test_terminal_line_is_redrawn_in_place_at_most_five_times_a_second() -> None:
    stream, clock = Terminal(), Clock()
    line = progress.Line("m.gguf", 1000, 0, stream, clock)
    for _ in range(10):
        clock.now += 0.15
        line.update(10)
    line.close()
    text = stream.getvalue()
    assert text.count("\r") == 6  # every other update, then the close
    assert text.endswith("\rm.gguf: 100 B of 1000 B (10%), 67 B/s\n")
    assert text.count("\n") == 1


def test_tqdm_draws_the_bar_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class FakeBar:
        def __init__(self, **options: Any) -> None:
            made.append(options)

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    bar = progress.make("m.gguf", 1000, 200)
    assert isinstance(bar, FakeBar)
    assert made[0]["total"] == 1000
    assert made[0]["initial"] == 200
    assert made[0]["unit"] == "B"


def test_plain_line_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes the import fail
    assert isinstance(progress.make("m.gguf", 1000, 0), progress.Line)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (265_000_000, "252.7 MiB"),
        (3 * 1024**4, "3072.0 GiB"),
    ],
)
def test_human_sizes(size: int, text: str) -> None:
    assert progress.human(size) == text
