"""The ASGI application: routes, error answers, API keys, and the service's lifespan.

Owns assembling the parts and what happens at start (reap strays, preload, watch SIGHUP)
and at shutdown (stop every child). Every error that a route raises becomes its answer here,
in the shape the path's clients read (``errors.error_response``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.supervisor.api import admin, observe, openai, router, status_page, upstream
from corral.supervisor.api.ollama import routes as ollama
from corral.supervisor.errors import ServeError, error_response
from corral.supervisor.http.auth import RequireKey
from corral.supervisor.http.limits import Limits
from corral.supervisor.http.origins import BrowserChecks
from corral.supervisor.http.peers.router import PeerRouter
from corral.supervisor.runtime.child import strays
from corral.supervisor.service import Service

log = logging.getLogger("corral")


async def _serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    if exc.status >= 500:
        log.error("request error: %s %s: %s", request.method, request.url.path, exc.message)
    return exc.response(request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, str(detail), kind, exc.headers, request.url.path)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Hanging up mid-body is the client's choice, not corral's fault: one line, no traceback.
    log.info("client hung up while sending its body: %s %s", request.method, request.url.path)
    message = "the client closed the connection mid-body"
    return error_response(400, message, "invalid_request_error", path=request.url.path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request error: %s %s: unexpected", request.method, request.url.path)
    cause = exc.__cause__ if isinstance(exc, Escaped) else exc
    message = f"internal error: {type(cause).__name__}"
    return error_response(500, message, "server_error", path=request.url.path)


#: Every error a route raises, and the answer it becomes.
EXCEPTION_HANDLERS = {
    ServeError: _serve_error,
    HTTPException: _http_error,
    ClientDisconnect: _client_gone,
    Exception: _unexpected,
}


class Escaped(Exception):
    """What a route let escape that is no ``Exception``, carried to ``_unexpected``."""


class LastResort:
    """ASGI middleware, outside corral's own: starlette answers only an ``Exception`` with a
    handler, and uvicorn answers anything else with a text/plain 500 that no client of either
    API reads. A ``CancelledError`` that is not this request's own (a load cancelled under
    it) or a group of them becomes an ``Escaped``, answered in the path's shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except (asyncio.CancelledError, BaseExceptionGroup) as exc:
            if isinstance(exc, Exception):
                raise  # an ExceptionGroup: the handlers take it
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # this request's own cancellation: nobody is there to answer
            raise Escaped(type(exc).__name__) from exc


#: The middlewares corral serves through, each of which looks at an answer's start alone and
#: passes its body messages on untouched: the relay may write a body past them
#: (``http.direct_body``). One that needs the body passes ``direct_body.without(scope)`` on.
BODY_BLIND = (LastResort, BrowserChecks, Limits, RequireKey, PeerRouter)


class Watch(Protocol):
    """A task that lives as long as the service (``idle_exit.IdleExit``)."""

    def start(self) -> None: ...

    def cancel(self) -> None: ...


def build_app(service: Service, watch: Watch | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        strays.reap_strays(service.pool.owner)  # logs what it reaped
        service.pool.start_background()
        watcher = asyncio.create_task(_watch_sighup(service))
        if watch is not None:
            watch.start()
        try:
            yield
        finally:
            watcher.cancel()
            if watch is not None:
                watch.cancel()
            await service.pool.shutdown()
            await service.upstream.close()

    app = Starlette(
        routes=[
            *openai.routes(),
            *upstream.routes(),
            *status_page.routes(),
            *ollama.routes(),
            *observe.routes(),  # before admin: /logs/<model>/stream is not a model's log
            *admin.routes(),
            *router.routes(),
        ],
        middleware=[
            Middleware(LastResort),
            # First: a refused page must not get as far as a limit, a key check or a route.
            Middleware(BrowserChecks, config=lambda: service.config),
            Middleware(Limits, config=lambda: service.config),
            Middleware(RequireKey, keys=lambda: service.keys),
            # Inside RequireKey: a peer's model needs this corral's key, which stays here.
            # Ollama's model routes reach a peer through the one exchange path (translated).
            Middleware(
                PeerRouter,
                config=lambda: service.config,
                upstream=lambda: service.upstream,
                exchanged=ollama.MODEL_PATHS,
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = service
    return app


async def _watch_sighup(service: Service) -> None:
    """The signal handler only records SIGHUP; this loop does the reload."""
    loop = asyncio.get_running_loop()
    wanted = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, wanted.set)
    try:
        while True:
            await wanted.wait()
            wanted.clear()
            log.info("received SIGHUP, reloading the config")
            await service.reload()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
