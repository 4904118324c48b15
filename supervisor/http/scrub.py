"""What a child says about the machine's files, rewritten before a client sees it.

Owns a ``transform.Transform`` that replaces a model's absolute path with its file name in an
answer (llama-server's ``/props`` ``model_path``, a ``/completion`` answer's settings): a
client learns the model, not the layout of the disk or the user's home. It works on whole
lines, so a streamed answer (server-sent events end every event with a newline) is not held
back, and a path split between two chunks is still found. It does not choose which answers
to rewrite (``api``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


class HidePaths:
    """Replaces each of ``paths`` (plain, and as JSON escapes it) with its file name."""

    media_type: str | None = None  # the child's content type stays

    def __init__(self, paths: Iterable[Path]) -> None:
        self._pairs: list[tuple[bytes, bytes]] = []
        names: set[bytes] = set()
        for path in paths:
            names.update((path.name.encode(), _escaped(Path(path.name)).encode()))
            for old, new in ((str(path), path.name), (_escaped(path), _escaped(Path(path.name)))):
                pair = (old.encode(), new.encode())
                if pair not in self._pairs:
                    self._pairs.append(pair)
        self._names = tuple(names)
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self._held and chunk.endswith(b"\n"):  # a streamed event, whole: no copies
            return self._replace(chunk)
        data = self._held + chunk
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        return self._replace(data[:cut])

    def close(self, broken: bool) -> bytes:
        held, self._held = self._held, b""
        return self._replace(held)

    def _replace(self, data: bytes) -> bytes:
        for name in self._names:
            if name in data:
                break
        else:
            return data  # each form of a path ends in its file's name (a form of it): none here
        for old, new in self._pairs:
            data = data.replace(old, new)
        return data


def hiding(path: Path | None) -> HidePaths | None:
    """The transform for a model run from ``path``; None (bytes untouched) for a ``cmd``."""
    return None if path is None else HidePaths([path])


def _escaped(path: Path) -> str:
    return json.dumps(str(path))[1:-1]
