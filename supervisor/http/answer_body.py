"""An answer's body once the parser gives it out: held for the relay, or handed to it.

Owns what ``client.Answer`` does with each body piece: hold it for ``iter_any`` (and stop
reading the child's socket past ``HIGH_WATER`` held for a client that reads slower than the
child writes), or, with ``divert``, hand all that one read brought to the relay's writer at
once (the hot path, ``direct_body``: SSE events that waited in the socket together leave in
one write); and waiting for more under the request's ``silence`` (``upstream_timeout``).
It parses nothing and owns no connection (``client``).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import AsyncIterator, Callable

#: Body bytes held for a client that reads slower than the child writes; past this the
#: child's socket is not read until the client has taken what is held.
HIGH_WATER = 256 * 1024


class Broken(ConnectionError):
    """The child broke the exchange: closed early, or sent what is not HTTP."""


class Silent(Broken):
    """The child sent nothing for the request's ``silence`` seconds (``upstream_timeout``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"it sent nothing for {seconds:g} s (upstream_timeout)")


class Body:
    """The body side of ``client.Answer``, which sets ``transport``, the parse state
    (``_complete``, ``_error``) and the child's last byte (``_heard``)."""

    transport: asyncio.Transport | None
    _complete: bool
    _error: Exception | None
    _heard: float

    def _new_body(self, silence: float) -> None:
        self._silence = silence
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._paused = False
        self._wake: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], bool] | None = None  # see ``divert``
        self._sink_open = False  # not while bytes it refused are on their way through the relay
        self._out: list[bytes] = []  # the body of the read being parsed, for the sink

    def divert(self, sink: Callable[[bytes], bool]) -> None:
        """Hand the body to ``sink`` as it is read (what one read brings, in one piece),
        instead of holding it for ``iter_any``; what ``sink`` refuses (False) is held after
        all, and so is all that follows until ``iter_any`` has given it out. ``iter_any``
        still ends the body (or raises) as before."""
        self._sink = sink

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each piece what is there when the last was taken
        (with ``divert``: only what the sink refused)."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._held = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield data
            elif self._error is not None:
                raise self._error
            elif self._complete:
                return
            else:
                # Whatever was held has gone out through the relay: the sink may take over.
                self._sink_open = self._sink is not None
                await self._wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_any()])

    def _divert(self) -> None:
        """All the body one read brought, to the sink in one piece: SSE events that waited
        in the child's socket together leave in one write."""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        try:
            if self._sink is not None and self._sink(data):
                return
        except Exception as exc:  # a transform's bug: the relay reports it as its own
            self._fail(exc)
            return
        self._sink_open = False  # refused: held, in order, until the relay sent it
        self._hold(data)

    def _hold(self, body: bytes) -> None:
        self._chunks.append(body)
        self._held += len(body)
        if self._held > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._notify()

    def _fail(self, error: Exception) -> None:
        self._error = error
        if self.transport is not None:
            self.transport.close()
        self._notify()

    async def _wait(self) -> None:
        # Only while nothing is held for the client: the child's socket is read, so the silence
        # is the child's own. Diverted bytes wake nobody: a passed deadline is checked again.
        while True:
            self._wake = asyncio.get_running_loop().create_future()
            left = self._heard + self._silence - time.monotonic()
            try:
                async with asyncio.timeout(None if left == math.inf else left):
                    await self._wake
                return
            except TimeoutError:
                if time.monotonic() - self._heard < self._silence:
                    continue
                error = Silent(self._silence)
                self._fail(error)
                raise error from None
            finally:
                self._wake = None

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
