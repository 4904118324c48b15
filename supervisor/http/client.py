"""The HTTP/1.1 client that talks to children: kept-alive connections, httptools' parser.

Owns one connection to a child's ``127.0.0.1`` port: writing a request (its head is
``headers.request_head``) in one piece, and reading the answer with httptools (llhttp, the C
parser uvicorn uses): status, headers, then the body as it comes, content-length, chunked or
until close; or handing each body piece, as it is read, to the relay's writer (``divert``:
the hot path, ``direct_body``). Measured here, this path costs a third of aiohttp's client
per request. What it refuses: an answer head over ``MAX_HEAD_BYTES``, and a body past what
``HIGH_WATER`` lets it hold while the client reads slowly (it stops reading from the child
instead). Which connection a request uses (kept alive, idle ones closed
before llama-server's own 5 s keep-alive would close them under a request) is
``client_pool``'s. It knows nothing of models or routes (``proxy``); peers, which may be
remote and TLS, go through httpx.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

import httptools

from corral.supervisor.http.headers import first_value

#: An answer's head (status line and headers) larger than this is a broken child.
MAX_HEAD_BYTES = 64 * 1024
#: Body bytes held for a client that reads slower than the child writes; past this the
#: child's socket is not read until the client has taken what is held.
HIGH_WATER = 256 * 1024


class Broken(ConnectionError):
    """The child broke the exchange: closed early, or sent what is not HTTP."""


class Silent(Broken):
    """The child sent nothing for the request's ``silence`` seconds (``upstream_timeout``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"it sent nothing for {seconds:g} s (upstream_timeout)")


class _Extra(Exception):
    """Raised in a parser callback: the child began a second answer to one request."""


class Keeper(Protocol):
    """Where a finished answer's connection goes back (``client_pool.Pool``)."""

    def put(self, answer: Answer) -> None: ...

    def forget(self, answer: Answer) -> None: ...


class Answer(asyncio.Protocol):
    """One connection, and the answer it is reading (one at a time: no pipelining)."""

    def __init__(self, pool: Keeper, port: int) -> None:
        self._pool = pool
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._begin("GET")

    def _begin(self, method: str, silence: float = math.inf) -> None:
        self.status = 0
        self._silence = silence
        self._heard = time.monotonic()  # the child's last byte, or the request's start
        self.headers: list[tuple[bytes, bytes]] = []
        self._method = method
        self._parser = httptools.HttpResponseParser(self)
        self._head_bytes = 0  # of the headers parsed
        self._head_read = 0  # read while the head was still incomplete
        self._head_done = False
        self._complete = False
        self.got_bytes = False
        self._reusable = True
        self._error: Exception | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._paused = False
        self._wake: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], bool] | None = None  # see ``divert``
        self._sink_open = False  # not while bytes it refused are on their way through the relay

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not assert: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._heard = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Broken("it switched protocols, which corral does not relay"))
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Extra):
                # What follows the answer was never asked for: none of it is kept, and the
                # connection, out of step with its requests now, is never reused.
                self._reusable = False
                if self.transport is not None:
                    self.transport.close()
                return
            if self._head_bytes > MAX_HEAD_BYTES:  # on_header stopped the parser
                self._fail(Broken(f"its answer's head is over {MAX_HEAD_BYTES} bytes"))
            else:
                self._fail(Broken(f"its answer is not valid HTTP/1.1: {exc}"))
            return
        if not self._head_done:
            # A head arriving in pieces: counted per read (at most 256 KiB), so that a child
            # that never ends its head is cut off too.
            self._head_read += len(data)
            if self._head_read > MAX_HEAD_BYTES:
                self._fail(Broken(f"its answer's head is over {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._complete or self._error is not None:
            return
        if self._head_done and self._until_close():
            self._complete = True  # no length, not chunked: the close ends the body
        elif not self.got_bytes:
            self._error = Broken("its server closed the connection before answering")
        else:
            self._error = Broken("its server closed the connection mid-answer")
        self._notify()

    def pause_writing(self) -> None:  # the request is written in one piece: nothing waits
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._head_done:
            # One request, one answer: a second one's headers would join the first's.
            raise _Extra

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise ValueError("head too large")  # stops the parser: data_received says why
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and the like: the answer is still to come
            self.headers = []
            return
        self.status = status
        self._head_done = True
        self._notify()
        if self._method == "HEAD":
            # A HEAD answer has no body whatever its content-length says; the parser does
            # not know the method, so this connection is not reused.
            self._complete = True
            self._reusable = False

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        sink = self._sink
        if self._sink_open and sink is not None:
            try:
                if sink(body):
                    return
            except Exception as exc:  # a transform's bug: the relay reports it as its own
                self._fail(exc)
                return
            self._sink_open = False  # refused: held, in order, until the relay sent it
        self._chunks.append(body)
        self._held += len(body)
        if self._held > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an interim (1xx) answer
        # Read now: once this returns, the parser has forgotten it.
        self._reusable = self._reusable and self._parser.should_keep_alive()
        self._complete = True
        self._notify()

    # The answer, as the proxy reads it

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower case), or None."""
        return first_value(self.headers, name)

    def divert(self, sink: Callable[[bytes], bool]) -> bool:
        """Hand each body piece to ``sink`` as it is read, instead of holding it for
        ``iter_any``; a piece ``sink`` refuses (False) is held after all, and so is all
        that follows until ``iter_any`` has given it out. ``iter_any`` still ends the body
        (or raises) as before. True: this connection can divert (``proxy.Answer``)."""
        self._sink = sink
        return True

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

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool if it can be reused."""
        self._sink, self._sink_open = None, False
        reusable = self._complete and self._error is None and self._reusable
        if reusable and not self._chunks:
            self._pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        """Done with it early: closing tells the child (llama-server stops generating)."""
        if self.transport is not None:
            self.transport.close()
        self._pool.forget(self)

    # Within

    async def start(self, method: str, head: bytes, body: bytes, silence: float = math.inf) -> None:
        """Send a request and wait for its answer's status and headers; ``silence``: the
        seconds the child may send nothing, then or later (``Silent`` past them)."""
        self._begin(method, silence)
        assert self.transport is not None
        if len(body) < 65536:
            self.transport.write(head + body)  # one write: head and a small body together
        else:
            self.transport.writelines((head, body))  # no copy of a large body
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    def _until_close(self) -> bool:
        length, encoding = self.header(b"content-length"), self.header(b"transfer-encoding")
        return length is None and encoding is None and self.status not in (204, 304)

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
