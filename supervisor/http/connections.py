"""Connections, before any request exists: how large and how slow a request's head may be,
and how many connections may be open at once.

Owns a subclass of uvicorn's httptools protocol, which has no limit of its own (a 100 MB
header block took corral from 58 MB to 1.8 GB, before any key was checked):

- a head (request line and headers) over ``MAX_HEAD_BYTES`` is a 431 before the parser
  buffers it; more than ``MAX_HEADERS`` headers is a 431, a URL over ``MAX_URL_BYTES`` a 414;
- a head not complete within ``header_timeout`` (a socket that sends nothing, or half a
  head) is closed, so slowloris sockets don't pile up; so is a connection whose answer has
  gone out while the client still sends (a body the route never read, line breaks between
  requests): uvicorn cancels its keep-alive timer on any byte and never arms it again;
- a client that has read nothing of its answer for ``client_timeout`` (the socket's buffer
  stays full) is dropped: its request ends as a hang-up does, which frees its place and stops
  the child's generation;
- a connection over ``max_connections`` (idle keep-alive ones count) gets a 503 and is closed,
  so the sockets held, and so the file descriptors, stay bounded.

A refused client reads its answer while the rest of what it sends is discarded for up to
``LINGER_S`` (closing at once would reset the connection and lose the answer). When the server
stops, a connection whose request head is arriving still gets its answer. It also counts the
connections open, and since when none is, for ``idle_exit``. It knows
nothing of routes, keys or bodies (``origins``, ``auth``, ``limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from corral.generator.settings import Config
from corral.supervisor.errors import error_body
from corral.supervisor.http import direct_body

log = logging.getLogger("corral")

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_URL_BYTES = 8 * 1024
#: Seconds a refused client has to read its answer.
LINGER_S = 1.0
#: The kernel's send buffer for a client's socket (Linux doubles it). Until it is full,
#: nothing tells corral that the client reads nothing (``pause_writing``); left to grow (up
#: to 4 MB), it hid a stalled reader of a real model's stream for over 200 s.
SEND_BUFFER = 64 * 1024
#: Refused connections left open to linger at once; past that they close at once, so a
#: flood of refusals cannot hold file descriptors either.
MAX_LINGERING = 64


class Shared:
    """What every connection of one server reads: the config, and the connections admitted
    and refused-but-lingering; since when none has been open, and who to tell when the last
    one closes (``idle_exit``)."""

    def __init__(self, settings: Callable[[], Config]) -> None:
        self.settings = settings
        self.admitted = 0
        self.lingering = 0
        self.quiet_since = time.monotonic()
        self.on_quiet: Callable[[], None] | None = None

    @property
    def open(self) -> int:
        return self.admitted + self.lingering


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, a head deadline and a connection cap."""

    shared: ClassVar[Shared]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0
        self._headers = 0
        self._refused = False
        self._admitted = False
        self._lingers = False
        self._deadline: asyncio.TimerHandle | None = None
        self._pending: tuple[int, str] | None = None
        self._last_request = False
        self._stall: asyncio.TimerHandle | None = None
        config = self.shared.settings()
        if self.shared.admitted >= config.max_connections:
            busy = f"{config.max_connections} connections open (max_connections); retry later"
            self._refuse(503, busy, "overloaded_error", b"retry-after: 1\r\n")
            return
        self._admitted = True
        self.shared.admitted += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._arm(config.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        if self._admitted:
            self.shared.admitted -= 1
        if self._lingers:
            self.shared.lingering -= 1
        super().connection_lost(exc)
        if self.shared.open == 0:
            self.shared.quiet_since = time.monotonic()
            if self.shared.on_quiet is not None:
                self.shared.on_quiet()

    def shutdown(self) -> None:
        """The server stops (a signal, or ``idle_exit``): idle connections close, but one
        whose request head is arriving, or that was accepted just before the listening
        socket closed and has sent nothing yet, gets its answer first (uvicorn would close
        it mid-request). ``header_timeout`` bounds the wait for a head."""
        fresh = self.cycle is None
        if self._in_head and not self._refused and (fresh or self._head_bytes):
            self._last_request = True
            return
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: what a refused client still sends is dropped
        while data:
            if self._in_head:
                # Feed the head in slices that fit the limit: the parser never holds more.
                room = MAX_HEAD_BYTES - self._head_bytes
                if room <= 0:
                    big = f"request head larger than {MAX_HEAD_BYTES} bytes"
                    self._refuse(431, big, "invalid_request_error")
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            super().data_received(piece)
            if self._refused or self.transport.is_closing():
                return

    # Parser callbacks: a refusal is decided while parsing, and answered once the head ends.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._headers = 0
        if self._deadline is None:
            self._arm(self.shared.settings().header_timeout)

    def on_url(self, url: bytes) -> None:
        if self._pending is not None or len(self.url) + len(url) > MAX_URL_BYTES:
            self._pending = self._pending or (414, f"URL longer than {MAX_URL_BYTES} bytes")
            self.url = (self.url + url)[:MAX_URL_BYTES]  # bounded; its path picks the shape
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._pending is not None or self._headers > MAX_HEADERS:
            self._pending = self._pending or (431, f"more than {MAX_HEADERS} request headers")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        if self._pending is not None:
            self._refuse(*self._pending, "invalid_request_error")
            return
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:  # not an upgrade
            # The relay's lane for a streamed body (``direct_body``).
            self.scope["extensions"] = {direct_body.KEY: direct_body.offer(self.cycle)}
        if self._last_request:
            self.cycle.keep_alive = False  # answered, then closed: the server is stopping

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head = True  # what comes next on this connection is the next request's head
        super().on_message_complete()

    # uvicorn's hooks: the answer sent, the client's socket full or drained again

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deadline is None and not self.transport.is_closing():
            self._arm(self.shared.settings().header_timeout)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            seconds = self.shared.settings().client_timeout
            self._stall = self.loop.call_later(seconds, self._stalled, seconds)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._unstall()

    # Effects

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._head_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        """No request in progress, and none came whole within ``header_timeout``."""
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # a request is served: its own limits apply (client_timeout, the stall)
        idle = cycle is not None and self._in_head and self._head_bytes == 0
        if idle and self.timeout_keep_alive_task is not None:
            return  # nothing sent since the answer: uvicorn's keep-alive timer runs
        self.transport.close()

    def _stalled(self, seconds: float) -> None:
        self._stall = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "%s read nothing of its answer for client_timeout (%g s): connection dropped",
            client,
            seconds,
        )
        # abort, not close: close would wait for the buffer to drain, which it never does.
        self.transport.abort()

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _refuse(self, status: int, message: str, kind: str, extra: bytes = b"") -> None:
        self._refused = True
        self._disarm()
        # The path, once the request line is in: Ollama's clients read {"error": "<text>"}.
        # A connection refused for max_connections has sent none yet: OpenAI's shape.
        path = getattr(self, "url", b"").split(b"?", 1)[0].decode("latin-1")
        body = json.dumps(error_body(status, message, kind, path)).encode()
        head = b"content-type: application/json\r\nconnection: close\r\n" + extra
        head += b"content-length: %d\r\n\r\n" % len(body)
        self.transport.write(STATUS_LINE[status] + head + body)
        if self.shared.lingering < MAX_LINGERING and self.transport.can_write_eof():
            self._lingers = True
            self.shared.lingering += 1
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


def guarded(settings: Callable[[], Config]) -> type[GuardedProtocol]:
    """The protocol class to hand to uvicorn (``http=``), reading limits from ``settings``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"shared": Shared(settings)})
