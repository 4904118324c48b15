"""The Ollama routes that only read: ``/``, ``/api/version``, ``/api/tags``, ``/api/ps`` and
``/api/show``, and the request's model name as Ollama's clients spell it.

Owns reading each model file's facts (size, time; for ``show``, its GGUF header's, in a
thread) for the entries that ``models`` shapes. It
loads nothing and talks to no child.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from corral.generator.model_settings import ModelConfig
from corral.supervisor.api.ollama import models, requests
from corral.supervisor.errors import BadRequest
from corral.supervisor.http.json_body import read_json
from corral.supervisor.runtime import views
from corral.supervisor.service import Service


def model_name(body: dict[str, Any]) -> str:
    """The model a request names: ``model``, or ``name`` (older clients' spelling)."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str):
        raise BadRequest(f"model is required, as a name from GET /api/tags; got {name!r}")
    return name


async def show(request: Request) -> Response:
    entry = Service.of(request).pool.resolve(model_name(read_json(await request.body())))
    # The first read of a GGUF header takes a moment (0.24 s for Gemma 3's 262k-token
    # vocabulary): off the event loop, so streams in flight don't stall.
    header = await asyncio.to_thread(models.read_header_facts, entry.config)
    facts = _facts(request, entry.config)
    return JSONResponse(models.show_answer(entry.config, facts, header))


async def tags(request: Request) -> Response:
    pool = Service.of(request).pool
    listed = [e.config for e in pool.entries.values() if not e.config.unlisted]
    return JSONResponse({"models": [models.tag_entry(m, _facts(request, m)) for m in listed]})


async def ps(request: Request) -> Response:
    pool = Service.of(request).pool
    now = time.time()
    running = [
        models.ps_entry(
            e.config,
            _facts(request, e.config),
            views.expires_at(pool, e),
            now,
            pool.footprints.need(e.config),
            e.runs_on,
        )
        for e in pool.entries.values()
        if e.running()
    ]
    return JSONResponse({"models": running})


def _facts(request: Request, model: ModelConfig) -> models.FileFacts:
    """The model file's size and time; a ``cmd`` model without a file reads as empty."""
    try:
        stat = os.stat(model.path) if model.path is not None else None
    except OSError:
        stat = None
    if stat is None:
        return models.FileFacts(0, Service.of(request).started_at)
    return models.FileFacts(stat.st_size, stat.st_mtime)


async def version(request: Request) -> Response:
    return JSONResponse({"version": requests.VERSION})


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")
