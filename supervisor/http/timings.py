"""llama-server's ``timings``, read from an answer as it passes: tokens in and out, tokens/s.

Owns finding the ``timings`` object that llama-server puts in a whole answer and in the last
event of a stream, without parsing the answer: the pieces pass on untouched, only the last
``TAIL`` bytes are kept, and at the end the last ``"timings":{...}`` in them is read (a
flat object of numbers). It does not count anything itself: ``on_timings`` does.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from dataclasses import dataclass

#: Bytes kept from an answer's end: the timings object is ~300, the last event ~600.
TAIL = 4096
_KEY = b'"timings":'


@dataclass(frozen=True)
class Timings:
    prompt_tokens: int
    predicted_tokens: int
    predicted_per_second: float


def parse(tail: bytes) -> Timings | None:
    """The last timings object in ``tail``; None when there is none (not llama-server's)."""
    at = tail.rfind(_KEY)
    if at < 0:
        return None
    start = tail.find(b"{", at)
    end = tail.find(b"}", start)
    if start < 0 or end < 0:
        return None
    try:
        found = json.loads(tail[start : end + 1])
        return Timings(
            int(found["prompt_n"]),
            int(found["predicted_n"]),
            float(found["predicted_per_second"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class WatchTimings:
    """A ``transform.Transform`` that changes nothing and reports the answer's timings at its
    end."""

    media_type: str | None = None

    def __init__(self, on_timings: Callable[[Timings], None]) -> None:
        self._on_timings = on_timings
        # The last pieces, at least TAIL bytes of them once there are: kept, not joined,
        # so that a streamed token costs an append rather than a copy of the whole tail.
        self._pieces: collections.deque[bytes] = collections.deque()
        self._held = 0

    def feed(self, chunk: bytes) -> bytes:
        pieces = self._pieces
        pieces.append(chunk)
        self._held += len(chunk)
        while self._held - len(pieces[0]) >= TAIL:
            self._held -= len(pieces.popleft())
        return chunk

    @property
    def tail(self) -> bytes:
        """The answer's last TAIL bytes (all of it, if shorter)."""
        return b"".join(self._pieces)[-TAIL:]

    def close(self, broken: bool) -> bytes:
        found = None if broken else parse(self.tail)
        if found is not None:
            self._on_timings(found)
        return b""
