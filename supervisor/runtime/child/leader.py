"""The child's leader process as asyncio sees it, with its exit reported the moment it happens.

Owns the subprocess protocol ``process`` spawns with. It does not decide what an exit means
(``process`` does: a crash, a failed start, or an expected stop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast


class LeaderProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's own protocol, plus a call the moment the leader exits.

    ``Process.wait()`` returns only once the pipe is closed as well, which a grandchild
    holding it can delay forever; a crash must be seen when it happens.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int], None]) -> None:
        super().__init__(limit=2**16, loop=loop)
        self._report = on_exit
        self._process: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's process transport has SubprocessTransport's methods without the class.
        self._process = cast(asyncio.SubprocessTransport, transport)

    def process_exited(self) -> None:
        super().process_exited()
        code = self._process.get_returncode() if self._process is not None else None
        self._report(code if code is not None else -1)
