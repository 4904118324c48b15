"""Limits that keep one client from hurting the others: body size, body read time, the bytes
of bodies being received at once, and the number of requests handled at once.

Owns the ASGI middleware that enforces them and answers 413, 408 or 503 in the shape the
path's clients read (``errors.error_response``). The per-model concurrency and queue are
the pool's; these are the service's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.generator.settings import Config
from corral.supervisor.errors import (
    BodiesFull,
    PayloadTooLarge,
    RequestTimeout,
    error_response,
)


class Limits:
    def __init__(self, app: ASGIApp, config: Callable[[], Config]) -> None:
        self.app = app
        self.config = config
        self.active = 0
        #: Bytes of the bodies being received, over all requests: what a body declares
        #: (Content-Length), or what has come so far of one that declares nothing.
        self.receiving = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.config()
        if self.active >= config.max_connections:
            await _refuse(scope, receive, send, 503, _busy(config), "overloaded_error")
            return
        declared = _content_length(scope)
        if declared is not None and declared > config.max_body_bytes:
            await _refuse(scope, receive, send, 413, _too_big(config), "invalid_request_error")
            return
        body = _Body(self, config, declared or 0)
        if not body.admitted():
            await _refuse(scope, receive, send, 503, _bodies_full(config), "overloaded_error")
            return
        self.active += 1
        try:
            # Errors raised while the route reads the body become answers there (ServeError).
            await self.app(scope, body.bounded(receive), send)
        finally:
            self.active -= 1
            body.done()


class _Body:
    """One request's body as it is received: its bytes counted against ``max_body_bytes``
    and, with every other body still coming, against ``max_receiving_bytes``."""

    def __init__(self, limits: Limits, config: Config, declared: int) -> None:
        self.limits = limits
        self.config = config
        self.held = declared  # counted in limits.receiving until the body is in
        self.received = 0

    def admitted(self) -> bool:
        # One body is always let in (the others' are in, or there are none), so a
        # max_receiving_bytes below max_body_bytes never refuses everything.
        total = self.limits.receiving
        if total and total + self.held > self.config.max_receiving_bytes:
            self.held = 0
            return False
        self.limits.receiving += self.held
        return True

    def done(self) -> None:
        """The body is in (or the request ended): the route holds it now, not the receiver."""
        self.limits.receiving -= self.held
        self.held = 0

    def bounded(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes and gives up on a client that sends too slowly.

        ``client_timeout`` bounds the whole body, from the end of the request's head: a limit
        per chunk would let a client hold its place forever by sending a byte at a time.
        """
        config = self.config
        body_done = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.client_timeout

        async def wrapped() -> Message:
            nonlocal body_done
            if body_done:
                # After the body, receive() only waits for a disconnect: no time limit there.
                return await receive()
            try:
                # timeout_at, not wait_for: no task per body message (the body's first
                # message is usually there already).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"request body not received within client_timeout ({config.client_timeout:g} s)"
                ) from None
            if message["type"] == "http.request":
                self._count(len(message.get("body", b"")))
                body_done = not message.get("more_body", False)
                if body_done:
                    self.done()
            return message

        return wrapped

    def _count(self, size: int) -> None:
        self.received += size
        if self.received > self.config.max_body_bytes:
            raise PayloadTooLarge(_too_big(self.config))
        if self.received > self.held:  # past what it declared (or it declared nothing)
            limits = self.limits
            others = limits.receiving - self.held
            if others and others + self.received > self.config.max_receiving_bytes:
                raise BodiesFull(_bodies_full(self.config))
            limits.receiving += self.received - self.held
            self.held = self.received


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_big(config: Config) -> str:
    return f"request body larger than max_body_bytes ({config.max_body_bytes} bytes)"


def _busy(config: Config) -> str:
    return f"{config.max_connections} requests in progress (max_connections); retry later"


def _bodies_full(config: Config) -> str:
    return (
        f"request bodies being received hold {config.max_receiving_bytes} bytes "
        "(max_receiving_bytes); retry later"
    )


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, kind: str
) -> None:
    headers = {"Retry-After": "1"} if status == 503 else {}
    answer = error_response(status, message, kind, headers, scope["path"])
    await answer(scope, receive, send)
