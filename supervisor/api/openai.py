"""The OpenAI-compatible routes: requests routed by their ``model``, the model list, and
``/upstream/<model>/<path>`` passthrough.

Owns reading a request's JSON (400 when it is not an object with a ``model``), applying the
model's defaults and a client's ``keep_alive`` (an extra field, as on Ollama's API, removed
before forwarding), and sending the request down the service's one exchange path. It does
not start or stop anything itself (``runtime.pool``).
"""

from __future__ import annotations

import contextlib
import json
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from corral.supervisor.errors import BadRequest, UnknownModel
from corral.supervisor.http import keep_alive
from corral.supervisor.http.defaults import apply_defaults
from corral.supervisor.http.json_body import read_json
from corral.supervisor.runtime import views
from corral.supervisor.service import Service

#: POST endpoints routed by the body's ``model`` field (llama-server's own paths included).
MODEL_ROUTED = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/responses",
    "/completion",
    "/infill",
    "/rerank",
    "/embeddings",
)


async def routed(request: Request) -> Response:
    svc = Service.of(request)
    body = await request.body()
    payload = read_json(body)
    if "model" not in payload:
        raise BadRequest("missing `model`: name one of GET /v1/models")
    entry = svc.pool.resolve(payload["model"])
    sent_keep_alive = keep_alive.FIELD in payload
    keep = keep_alive.take(payload)  # removed: llama-server has no such field
    if apply_defaults(payload, entry.config, request.url.path) or sent_keep_alive:
        body = json.dumps(payload).encode()

    def on_lease() -> None:
        # Inside the lease, once the model is loaded: loading resets a keep_alive.
        if keep is not None:
            svc.pool.set_keep_alive(entry, keep)

    method, path, headers = request.method, request.url.path, request.headers
    async with svc.exchange(request, entry.name, on_lease=on_lease) as ex:
        if payload.get("stream") is True:
            return await ex.stream(method, path, headers, body)
        return await ex.fetch(method, path, headers, body)


async def list_models(request: Request) -> JSONResponse:
    svc = Service.of(request)
    created = int(svc.started_at)
    data = []
    for entry in svc.pool.entries.values():
        if entry.config.unlisted:
            continue
        data.append(
            {
                "id": entry.name,
                "object": "model",
                "created": created,
                "owned_by": "corral",
                "aliases": entry.config.aliases,
                "state": entry.state.public,
                "expires_at": views.expires_at(svc.pool, entry),
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def passthrough(request: Request) -> Response:
    """Any method to ``/upstream/<model>/<path>``: the longest known model name wins, since
    names may contain slashes."""
    svc = Service.of(request)
    # The path as the client encoded it: decoding it here would put raw spaces, NULs or CR/LF
    # into the child's request line.
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    raw_parts = raw.decode("ascii", "replace").split("/")[2:]  # after "", "upstream"
    parts = [unquote(p) for p in raw_parts]
    for cut in range(len(parts), 0, -1):
        name = "/".join(parts[:cut])
        with contextlib.suppress(UnknownModel):
            entry = svc.pool.resolve(name)
            path = "/" + "/".join(raw_parts[cut:])
            query = request.scope.get("query_string", b"").decode("ascii", "replace")
            if query:
                path += "?" + query
            body = await request.body()
            async with svc.exchange(request, entry.name) as ex:
                return await ex.stream(request.method, path, request.headers, body)
    svc.pool.resolve(parts[0])  # raises the 404 that lists the known names
    raise AssertionError("unreachable")


def routes() -> list[BaseRoute]:
    return [
        *(Route(path, routed, methods=["POST"]) for path in MODEL_ROUTED),
        Route("/v1/models", list_models, methods=["GET"]),
        Route(
            "/upstream/{rest:path}",
            passthrough,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        ),
    ]
