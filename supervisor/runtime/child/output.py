"""A child's output: read without pause, its recent lines kept for errors and ``/logs``.

Owns the ring buffer of a child's last lines (stdout and stderr, interleaved as written),
how many were ever written (so a failed load can quote only its own), the lines that say
where a load went (buffer sizes, layers offloaded, "no usable GPU found"; kept as they
arrive: at ``--log-verbosity 4`` a load writes ~200 lines, and requests push them out of
the ring; ``learned`` and ``offload`` read them), and their debug log.
It also says when the child writes the line that it serves (``ready_line``, ``heard``), so
that a load waits for that line instead of polling. It does not run the child (``process``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from corral.supervisor.runtime.memory import offload

MAX_LINE = 8192
log = logging.getLogger("corral")


class Output:
    """One child's recent output lines."""

    def __init__(self, name: str, size: int, ready_line: str | None = None) -> None:
        self.name = name
        self.total = 0  # lines ever written
        #: Text of the line the child writes once it serves (llama-server's "listening on"),
        #: and whether this run wrote it (``heard``; cleared for each new process).
        self.ready_line = ready_line
        self.heard = asyncio.Event()
        self.heard_at = 0.0  # time.monotonic() of the line
        self._lines: deque[str] = deque(maxlen=size)
        self._buffers: deque[str] = deque(maxlen=64)

    def begin(self) -> None:
        """A new process starts: what the last one said about its load no longer holds."""
        self._buffers.clear()
        self.heard.clear()

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines."""
        return list(self._lines)[-n:] if n > 0 else []

    def since(self, mark: int) -> tuple[list[str], int]:
        """The lines written after the first ``mark`` (those still kept), and the new mark."""
        new = min(self.total - mark, len(self._lines))
        return self.tail(new), self.total

    def buffer_lines(self) -> list[str]:
        """The lines that say where the load went (buffer sizes, layers offloaded, no
        usable GPU), however far back."""
        return list(self._buffers)

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Read ``stream`` to its end, without pause: a child blocked on a full pipe would
        look hung."""
        pending = b""
        while chunk := await stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > MAX_LINE:  # a line without end must not grow without bound
                lines.append(pending[:MAX_LINE])
                pending = b""
            for line in lines:
                self._keep(line)
        if pending:
            self._keep(pending)

    def _keep(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self._lines.append(line)
        self.total += 1
        if offload.keeps(line):
            self._buffers.append(line)
        if self.ready_line is not None and self.ready_line in line and not self.heard.is_set():
            self.heard_at = time.monotonic()
            self.heard.set()
        log.debug("%s| %s", self.name, line)
