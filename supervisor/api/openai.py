"""The OpenAI-compatible routes: requests routed by their ``model`` (Anthropic's
``/v1/messages`` too, which llama-server serves), the model list and one model
(``/upstream/<model>/<path>`` passthrough is ``upstream``'s).

Owns reading a request's JSON (400 when it is not an object with a ``model``), refusing
``tools`` for a model whose template cannot format them (400, before anything loads),
applying the model's defaults and a client's ``keep_alive`` (an extra field, as on Ollama's
API, removed before forwarding), and sending the request down the service's one exchange
path, with the answer's ``model`` rewritten to the name the client asked for where the child
names it otherwise (``answer_transform``). A streaming chat request to a model with
``send_loading_state`` that is not loaded gets the load's progress first
(``http.loading_state``). It does not start or stop anything itself (``runtime.pool``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from corral.supervisor.api import llama_meta
from corral.supervisor.api.ollama.answers import now_text
from corral.supervisor.errors import BadRequest, ChildError, child_message, speaks_anthropic
from corral.supervisor.http import keep_alive, model_field, scrub
from corral.supervisor.http.defaults import apply_defaults
from corral.supervisor.http.json_body import read_json
from corral.supervisor.http.loading_state import OpenAIFraming, ProgressThenAnswer
from corral.supervisor.http.transform import Transform, chain
from corral.supervisor.runtime import views
from corral.supervisor.runtime.child import chat_templates, embeddings
from corral.supervisor.runtime.entries import Entry
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
    "/v1/messages",  # Anthropic's API, served by llama-server itself
    "/v1/messages/count_tokens",
)
#: Endpoints whose ``tools`` go through the model's chat template.
TOOL_PATHS = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/messages"})


async def routed(request: Request) -> Response:
    svc = Service.of(request)
    body = await request.body()
    payload = read_json(body)
    if "model" not in payload:
        raise BadRequest("missing `model`: name one of GET /v1/models")
    entry = svc.pool.resolve(payload["model"])
    if payload.get("tools") and request.url.path in TOOL_PATHS:
        # Without this, a template that formats no tools gets them silently dropped, and a
        # built-in name run without Jinja gets llama-server's 500.
        refusal = await asyncio.to_thread(chat_templates.tools_refusal, entry.config)
        if refusal is not None:
            raise BadRequest(f"model {entry.name!r} does not support tools: {refusal}")
    if request.url.path == "/v1/embeddings":
        cannot = await asyncio.to_thread(embeddings.refusal, entry.config)
        if cannot is not None:
            raise BadRequest(cannot)
    sent_keep_alive = keep_alive.FIELD in payload
    keep = keep_alive.take(payload)  # removed: llama-server has no such field
    if apply_defaults(payload, entry.config, request.url.path) or sent_keep_alive:
        body = json.dumps(payload).encode()

    def on_lease() -> None:
        # Inside the lease, once the model is loaded: loading resets a keep_alive.
        if keep is not None:
            svc.pool.set_keep_alive(entry, keep)

    method, path, headers = request.method, request.url.path, request.headers
    asked = payload["model"] if isinstance(payload["model"], str) else entry.name
    streaming = payload.get("stream") is True

    async def answer() -> Response:
        async with svc.exchange(request, entry.name, on_lease=on_lease, size=len(body)) as ex:
            upstream = await ex.open(method, path, headers, body)
            if upstream.status >= 400 and speaks_anthropic(path):
                # llama-server words its errors in OpenAI's envelope; Anthropic's SDKs read
                # their own (the app writes it for this path).
                content = await ex.read(upstream)
                raise ChildError(upstream.status, child_message(upstream.status, content))
            answers_as = ex.lease.answers_as if ex.lease is not None else None  # a peer: None
            rewrite = answer_transform(path, asked, answers_as, entry.config.path)
            if streaming:
                return ex.relay(upstream, rewrite)
            return await ex.whole(upstream, rewrite)

    loading = entry.config.send_loading_state and not entry.admitting()
    if streaming and loading and path == "/v1/chat/completions":
        framing = OpenAIFraming(asked)
        return ProgressThenAnswer(answer, svc.pool.events.follow, entry.name, framing)
    return await answer()


def answer_transform(
    path: str, asked: str, answers_as: str | None, model_path: Path | None
) -> Transform | None:
    """What a routed answer passes through on its way: its ``model`` made the name the client
    asked for where the child's differs (an alias, a preset sharing another's child, a name
    corral did not give it) or a Responses object lacks one (``model_field.needed``), and any
    mention of the model's path made the file's name (``scrub``: always)."""
    named = model_field.ModelField(asked) if model_field.needed(path, asked, answers_as) else None
    return chain(named, scrub.hiding(model_path))


def model_entry(svc: Service, entry: Entry, meta: dict[str, Any] | None) -> dict[str, object]:
    """One model as OpenAI lists it (and Anthropic: ``type``, ``display_name``,
    ``created_at``; llama-server: ``meta``), with corral's aliases, state and expiry."""
    return {
        "id": entry.name,
        "object": "model",
        "created": int(svc.started_at),
        "owned_by": "corral",
        "type": "model",
        "display_name": entry.name,
        "created_at": now_text(svc.started_at),
        "meta": meta,
        "aliases": entry.config.aliases,
        "state": entry.state.public,
        "expires_at": views.expires_at(svc.pool, entry),
        # corral's own: bytes in all and per device, and the figure's source
        "memory": views.memory(svc.pool, entry),
    }


async def list_models(request: Request) -> JSONResponse:
    svc = Service.of(request)
    listed = [e for e in svc.pool.entries.values() if not e.config.unlisted]
    # Headers are read once per file (cached), off the loop: the first read takes a moment.
    metas = await asyncio.to_thread(lambda: [llama_meta.read(e.config) for e in listed])
    data = [model_entry(svc, e, m) for e, m in zip(listed, metas, strict=True)]
    # Anthropic's page fields: the SDK's models.list() reads them to stop paging.
    ids = [m["id"] for m in data]
    page = {
        "has_more": False,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }
    return JSONResponse({"object": "list", "data": data, **page})


async def retrieve_model(request: Request) -> JSONResponse:
    """``GET /v1/models/{id}`` (the SDK's ``models.retrieve``): by name or alias, unlisted
    models too (they are servable); an unknown one is the usual 404 in OpenAI's shape."""
    svc = Service.of(request)
    entry = svc.pool.resolve(request.path_params["model"])
    meta = await asyncio.to_thread(llama_meta.read, entry.config)
    return JSONResponse(model_entry(svc, entry, meta))


def routes() -> list[BaseRoute]:
    return [
        *(Route(path, routed, methods=["POST"]) for path in MODEL_ROUTED),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    ]
