"""llama.cpp's router-mode endpoints: ``GET /models``, ``POST /models/load`` and
``POST /models/unload``, with the router's shapes, for clients that manage a llama-server
router (Open WebUI's llama.cpp connection among them).

Owns translating corral's models and states into the router's list (``status.value``:
unloaded, loading, loaded) and its ``{"success": true}`` answers. Loading and unloading are
the pool's; errors keep the OpenAI envelope, as the router's do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from corral.supervisor.errors import BadRequest
from corral.supervisor.http.json_body import read_json
from corral.supervisor.runtime.child.command import build_argv
from corral.supervisor.runtime.child.states import ProcessState
from corral.supervisor.runtime.entries import Entry
from corral.supervisor.service import Service

#: corral's states in the router's words (it has no "unloading" or "failed" of its own).
_STATUS = {
    ProcessState.STOPPED: "unloaded",
    ProcessState.STARTING: "loading",
    ProcessState.READY: "loaded",
    ProcessState.STOPPING: "unloaded",
    ProcessState.FAILED: "unloaded",
}


def status(entry: Entry) -> dict[str, object]:
    """The router's ``status`` object; ``args`` is the running child's command line."""
    out: dict[str, object] = {"value": _STATUS[entry.state]}
    port = entry.child.port if entry.child is not None and entry.running() else None
    if port is not None:
        out["args"] = build_argv(entry.config, "llama-server", port)
    if entry.state is ProcessState.FAILED:
        out["failed"] = True
    return out


async def list_models(request: Request) -> JSONResponse:
    svc = Service.of(request)
    data = [
        {
            "id": entry.name,
            "object": "model",
            "owned_by": "corral",
            "created": int(svc.started_at),
            "aliases": entry.config.aliases,
            "path": str(entry.config.path) if entry.config.path is not None else None,
            "status": status(entry),
        }
        for entry in svc.pool.entries.values()
        if not entry.config.unlisted
    ]
    return JSONResponse({"object": "list", "data": data})


async def _model(request: Request) -> str:
    body = read_json(await request.body())
    name = body.get("model")
    if not isinstance(name, str):
        raise BadRequest(f"model is required, as an id from GET /models; got {name!r}")
    return name


async def load(request: Request) -> JSONResponse:
    """Load now and answer once it is ready (a failed start is the usual 503)."""
    svc = Service.of(request)
    entry = svc.pool.resolve(await _model(request))
    async with svc.exchange(request, entry.name):
        pass
    return JSONResponse({"success": True})


async def unload(request: Request) -> JSONResponse:
    """Unload once its requests finish; a model that is not loaded succeeds as well."""
    svc = Service.of(request)
    entry = svc.pool.resolve(await _model(request))
    await svc.pool.unload(entry.name)
    return JSONResponse({"success": True})


def routes() -> list[BaseRoute]:
    return [
        Route("/models", list_models, methods=["GET"]),
        Route("/models/load", load, methods=["POST"]),
        Route("/models/unload", unload, methods=["POST"]),
    ]
