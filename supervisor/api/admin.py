"""The operator's routes: what runs, unloading, a child's log, and liveness.

Owns /running, /unload, /unload/<model>, /logs/<model> and /health. It reads the pool and asks
it to unload; it decides nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from corral.supervisor.errors import BadRequest
from corral.supervisor.runtime import views
from corral.supervisor.service import Service

#: Digits a ``lines`` count may have.
MAX_DIGITS = 9


async def running(request: Request) -> JSONResponse:
    return JSONResponse({"running": views.running(Service.of(request).pool)})


async def unload(request: Request) -> JSONResponse:
    name = request.path_params.get("model")
    svc = Service.of(request)
    stopped = await (svc.pool.unload() if name is None else svc.unload(request, name))
    return JSONResponse({"unloaded": stopped})


async def logs(request: Request) -> PlainTextResponse:
    """The model's last llama-server log lines (its stderr ring buffer)."""
    entry = Service.of(request).pool.resolve(request.path_params["model"])
    count = request.query_params.get("lines", "200")
    # isdigit() alone takes "²" and other digits that int() refuses; and int() refuses more
    # than 4,300 digits (a ValueError, so a 500): no log holds a billion lines anyway.
    if not (count.isascii() and count.isdigit() and len(count) <= MAX_DIGITS):
        shown = count if len(count) <= 20 else f"{count[:20]}... ({len(count)} characters)"
        raise BadRequest(f"`lines` must be a whole number below 10^{MAX_DIGITS}, got {shown!r}")
    lines = entry.child.stderr_tail(int(count)) if entry.child else []
    return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def routes() -> list[BaseRoute]:
    return [
        Route("/running", running, methods=["GET"]),
        Route("/unload", unload, methods=["POST"]),
        Route("/unload/{model:path}", unload, methods=["POST"]),
        Route("/logs/{model:path}", logs, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
