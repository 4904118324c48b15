"""The HTTP/1.1 client that talks to children: kept-alive connections, httptools' parser.

Owns one connection to a child's ``127.0.0.1`` port: writing a request (its head is
``headers.request_head``) in one piece, and reading the answer with httptools (llhttp, the C
parser uvicorn uses): status, headers, then the body as it comes, content-length, chunked or
until close (what becomes of each body piece, held or diverted, is ``answer_body``'s).
Measured here, this path costs a third of aiohttp's client per request. What it refuses: an
answer head over ``MAX_HEAD_BYTES``, a second answer to one request, and what is not
HTTP/1.1. Which connection a request uses (kept alive, idle ones closed
before llama-server's own 5 s keep-alive would close them under a request) is
``client_pool``'s. It knows nothing of models or routes (``proxy``); peers, which may be
remote and TLS, go through httpx.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol, cast

import httptools

from corral.supervisor.http.answer_body import HIGH_WATER, Body, Broken, Silent
from corral.supervisor.http.headers import first_value

__all__ = ["HIGH_WATER", "MAX_HEAD_BYTES", "Answer", "Broken", "Keeper", "Silent"]

#: An answer's head (status line and headers) larger than this is a broken child.
MAX_HEAD_BYTES = 64 * 1024


class _Extra(Exception):
    """Raised in a parser callback: the child began a second answer to one request."""


class Keeper(Protocol):
    """Where a finished answer's connection goes back (``client_pool.Pool``)."""

    def put(self, answer: Answer) -> None: ...

    def forget(self, answer: Answer) -> None: ...


class Answer(Body, asyncio.Protocol):
    """One connection, and the answer it is reading (one at a time: no pipelining)."""

    def __init__(self, pool: Keeper, port: int) -> None:
        self._pool = pool
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._begin("GET")

    def _begin(self, method: str, silence: float = math.inf) -> None:
        self.status = 0
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
        self._new_body(silence)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not assert: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._heard = time.monotonic()
        try:
            self._parser.feed_data(data)
            if self._out:
                self._divert()
        except httptools.HttpParserUpgrade:
            self._fail(Broken("it switched protocols, which corral does not relay"))
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Extra):
                # What follows the answer was never asked for: none of it is kept, and the
                # connection, out of step with its requests now, is never reused.
                if self._out:
                    self._divert()  # the answer's own end, read with it
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
        if self._sink_open:
            self._out.append(body)  # to the sink once the read is parsed (``_divert``)
            return
        self._hold(body)

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
