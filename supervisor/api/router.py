"""llama.cpp's router-mode endpoints: ``GET /models``, ``POST /models/load``,
``POST /models/unload``, ``GET /models/sse`` and ``GET /props`` (``?model=NAME``), with the
router's shapes (tools/server/server-models.cpp), for clients that manage a llama-server
router (its web UI, Open WebUI's llama.cpp connection).

Owns translating corral's models and states into the router's list (``status.value``:
unloaded, loading, loaded; ``architecture``; ``in_cache``), its ``{"success": true}``
answers, the pool's events as the router's ``status_change`` events, and which ``/props``
a request gets: the router's own without a model, the model's child's with one (loaded
first, unless ``autoload=false``). Loading and unloading are the pool's; errors keep the
OpenAI envelope, as the router's do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from corral.supervisor.api import llama_meta
from corral.supervisor.errors import BadRequest
from corral.supervisor.http import scrub
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
            # The router's "downloaded into its cache": here, a model corral pulls itself.
            "in_cache": entry.config.source is not None,
            "architecture": llama_meta.architecture(entry.config),
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
    await svc.unload(request, entry.name)
    return JSONResponse({"success": True})


async def props(request: Request) -> Response:
    """The router's ``/props`` without ``model``: what its web UI reads to know a router;
    with ``model``, that model's own ``/props`` from its child (its path as a file name)."""
    svc = Service.of(request)
    name = request.query_params.get("model")
    if not name:
        return JSONResponse(
            {
                "role": "router",
                "max_instances": len(svc.pool.entries),
                "models_autoload": True,
                "model_alias": "llama-server",
                "model_path": "none",
                "default_generation_settings": {"params": {}, "n_ctx": 0},
                "build_info": "corral",
            }
        )
    entry = svc.pool.resolve(name)
    if request.query_params.get("autoload") in ("false", "0") and not entry.running():
        raise BadRequest(f"model {entry.name!r} is not loaded, and autoload is false")
    async with svc.exchange(request, entry.name) as ex:
        hide = scrub.hiding(entry.config.path)
        return await ex.stream("GET", "/props", request.headers, b"", hide)


#: corral's events in the router's ``status_change`` words, with the exit code it adds.
_EVENTS = {
    "loading": ("loading", None),
    "ready": ("loaded", None),
    "load_failed": ("unloaded", 1),
    "load_cancelled": ("unloaded", 0),
    "unloaded": ("unloaded", 0),
    "crashed": ("unloaded", "code"),
}
#: Seconds between two comment lines on a quiet stream (proxies close silent connections).
HEARTBEAT = 15.0


def router_event(event: dict[str, Any]) -> dict[str, Any] | None:
    """A pool event as the router's SSE payload; None for events it has no word for."""
    if event["kind"] not in _EVENTS:
        return None
    value, code = _EVENTS[event["kind"]]
    data: dict[str, Any] = {"status": value}
    if code is not None:
        data["exit_code"] = event.get("code", 1) if code == "code" else code
    return {"model": event["model"], "event": "status_change", "data": data}


async def models_sse(request: Request) -> StreamingResponse:
    """``GET /models/sse``: each model's status changes from now on, as ``data:`` lines."""
    bus = Service.of(request).pool.events

    async def stream() -> AsyncIterator[bytes]:
        async with bus.follow() as queue:
            yield b": following\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                said = router_event(event)
                if said is not None:
                    yield f"data: {json.dumps(said, separators=(',', ':'))}\n\n".encode()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def routes() -> list[BaseRoute]:
    return [
        Route("/props", props, methods=["GET"]),
        Route("/models/sse", models_sse, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/models/load", load, methods=["POST"]),
        Route("/models/unload", unload, methods=["POST"]),
    ]
