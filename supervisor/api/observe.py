"""Watching the service: every model's status, the event stream, live logs and metrics.

Owns ``GET /status`` (every configured model, as ``/running`` shows a loaded one),
``GET /events`` (server-sent events: the pool's ``events``, the recent ones first),
``GET /logs/<model>/stream`` (a model's log lines as they are written, across restarts of its
child) and ``GET /metrics`` (Prometheus' text format). It reads; it changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from corral.supervisor.http import auth
from corral.supervisor.runtime import views
from corral.supervisor.runtime.events import Event
from corral.supervisor.runtime.metrics import CONTENT_TYPE
from corral.supervisor.service import Service

#: Seconds between two comment lines on a quiet stream (proxies close silent connections).
HEARTBEAT = 15.0
#: Seconds between two looks at a followed log.
LOG_POLL = 0.2
#: Queue changes go out at most this often per stream, the last one per model: at hundreds
#: of requests a second, one event each would cost more than the requests.
QUEUE_EVERY = 0.25
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def status(request: Request) -> JSONResponse:
    svc = Service.of(request)
    return JSONResponse({"started_at": svc.started_at, "models": views.every_model(svc.pool)})


def sse(event: Event) -> bytes:
    """One server-sent event: named for its kind, so ``EventSource`` can listen per kind."""
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()


def sse_lines(line: str) -> str:
    """One log line as one event: each piece between CRs is a ``data:`` field of its own.

    EventSource ends a line at CR as at LF, so a CR inside a ``data:`` (a child echoing a
    client's grammar) would start a field of the client's choosing: ``event: crashed``.
    """
    return "".join(f"data: {part}\n" for part in line.removesuffix("\r").split("\r")) + "\n"


async def events(request: Request) -> StreamingResponse:
    """Server-sent events: the recent history (not queue changes), then each new one; queue
    changes at most every ``QUEUE_EVERY`` seconds, the latest per model. A reload that
    revokes the follower's key ends the stream."""
    svc = Service.of(request)
    bus = svc.pool.events

    async def stream() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async with bus.follow() as queue:
            for event in bus.history():
                yield sse(event)
            yield b": following\n\n"
            held: dict[str, Event] = {}  # queue changes not sent yet, by model
            due = 0.0
            while True:
                wait = max(0.0, due - loop.time()) if held else HEARTBEAT
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if held:
                        yield b"".join(sse(e) for e in held.values())
                        held.clear()
                    else:
                        yield b": heartbeat\n\n"
                    continue
                if event["kind"] == "reloaded" and not auth.still_allowed(request.scope, svc.keys):
                    return  # its key was revoked: it learns nothing more
                if event["kind"] == "queue":
                    if not held:
                        due = loop.time() + QUEUE_EVERY
                    held[event["model"]] = event
                    continue
                # Anything else goes out at once, after the queue changes before it.
                yield b"".join(sse(e) for e in [*held.values(), event])
                held.clear()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def log_stream(request: Request) -> StreamingResponse:
    """A model's log as server-sent events, one line per ``data:``; the last 50 lines first.

    A new child (the model loaded again) starts a new log: its lines follow the old ones.
    A reload that revokes the follower's key ends the stream.
    """
    svc = Service.of(request)
    name = svc.pool.resolve(request.path_params["model"]).name  # a 404 for an unknown model

    async def stream() -> AsyncIterator[bytes]:
        child, mark, quiet = None, 0, 0.0
        first = True
        keys = svc.keys
        while True:
            if svc.keys is not keys:  # a reload: is its key still one?
                keys = svc.keys
                if not auth.still_allowed(request.scope, keys):
                    return
            entry = svc.pool.entries.get(name)
            if entry is None:
                return  # a reload removed the model
            if entry.child is not child:
                child, mark = entry.child, 0
            lines: list[str] = []
            if child is not None:
                lines, total = child.lines_since(mark)
                if first:
                    lines = lines[-50:]
                mark = total
            first = False
            if lines:
                quiet = 0.0
                yield "".join(sse_lines(line) for line in lines).encode()
            else:
                quiet += LOG_POLL
                if quiet >= HEARTBEAT:
                    quiet = 0.0
                    yield b": heartbeat\n\n"
            await asyncio.sleep(LOG_POLL)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def metrics(request: Request) -> Response:
    # On the loop, not in a thread: the gauges read the pool, which only the loop changes.
    return Response(Service.of(request).metrics.render(), media_type=CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [
        Route("/status", status, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        # Before admin's /logs/{model:path}, which would take "m/stream" for a model's name.
        Route("/logs/{model:path}/stream", log_stream, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
