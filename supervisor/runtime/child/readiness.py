"""When a starting child counts as ready: its ready line, then one ``/health``; or a poll.

Owns the readiness rule and its pace. llama-server says when it serves (its "listening on
http" line): readiness is that line confirmed by one ``/health``, with no polling while the
model loads. A ``cmd`` server may print no such line, so its ``/health`` is polled every
``POLL_INTERVAL``. It does not spawn, signal or reap the child (``process`` does), and it
keeps no output (``output`` hears the line).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

from corral.supervisor.runtime.child.health import PROBE_TIMEOUT, probe_health
from corral.supervisor.runtime.child.output import Output

POLL_INTERVAL = 0.01  # readiness is seen within ~10 ms of /health turning 200
#: With a ready line, the probe's pace until the line comes: a safety net for a build that
#: words it otherwise, not the way readiness is seen.
QUIET_POLL = 1.0
#: llama-server's line once its model is loaded and it serves ("main: server is listening
#: on http://..." in older builds, "llama_server: listening on http://..." in newer ones).
LLAMA_SERVER_READY_LINE = "listening on http"


class Outcome(enum.Enum):
    """How a wait for readiness ended."""

    READY = "ready"
    EXITED = "exited"
    TIMEOUT = "timeout"
    STOPPING = "stopping"


async def until_ready(
    port: int,
    deadline: float,
    exited: asyncio.Future[int] | None,
    output: Output,
    stop_asked: asyncio.Event,
    *,
    stopping: Callable[[], bool],
) -> Outcome:
    """Wait for the ready line (if any), then confirm with ``/health``; or poll it.

    Wakes at once for the ready line, the leader's exit or a stop; ``deadline`` is on the
    loop's clock.
    """
    loop = asyncio.get_running_loop()
    assert exited is not None
    heard = output.heard
    wakes: set[asyncio.Future[Any]] = {
        exited,
        asyncio.ensure_future(heard.wait()),
        asyncio.ensure_future(stop_asked.wait()),
    }
    try:
        while True:
            if stopping():
                return Outcome.STOPPING
            if exited.done():
                return Outcome.EXITED
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Outcome.TIMEOUT
            status = await probe_health(port, min(PROBE_TIMEOUT, remaining))
            if status is not None and 200 <= status < 300 and not exited.done():
                return Outcome.READY
            quiet = output.ready_line is not None and not heard.is_set()
            await asyncio.wait(
                wakes,
                timeout=QUIET_POLL if quiet else POLL_INTERVAL,
                return_when=asyncio.FIRST_COMPLETED,
            )
    finally:
        for wake in wakes:
            if wake is not exited:
                wake.cancel()
