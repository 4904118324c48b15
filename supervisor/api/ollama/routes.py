"""The Ollama-compatible routes that reach a model: ``/api/chat``, ``/api/generate``,
``/api/embed`` and ``/api/embeddings``, plus the list of every Ollama route.

Owns reading such a request (its model, ``keep_alive``, whether it streams), translating it
(``requests``) and sending it down the service's one exchange path, then answering in
Ollama's shape: whole (``answers``) or as NDJSON lines while the child streams (``stream``,
as the relay's transform). Errors leave in Ollama's shape, ``{"error": "..."}`` (the app
picks it by path). The read-only routes (tags, ps, show, version) are ``info``'s; loading
and unloading are the pool's.

``keep_alive`` follows Ollama: 0 unloads the model once the request ends, a negative value
keeps it loaded, and the last request that sent one wins. It is applied once the lease is
held (loading a model resets it). A request without ``keep_alive`` leaves the current value
alone, so a client that knows nothing of it never undoes another client's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from corral.supervisor.api.ollama import answers, info, manage, models, requests, stream
from corral.supervisor.errors import BadRequest, ChildError, UpstreamFailed, child_message
from corral.supervisor.http import keep_alive, proxy
from corral.supervisor.http.defaults import apply_defaults
from corral.supervisor.http.json_body import read_json
from corral.supervisor.http.loading_state import OllamaFraming, ProgressThenAnswer
from corral.supervisor.runtime.child import chat_templates
from corral.supervisor.runtime.child.embeddings import refusal as embedding_refusal
from corral.supervisor.runtime.entries import Entry
from corral.supervisor.service import Exchange, Service

log = logging.getLogger("corral")

_JSON_HEADERS = {"Content-Type": "application/json"}

#: The routes that reach a model; a peer's model too, translated to OpenAI's API on the way.
MODEL_PATHS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})


class Call:
    """One request for a model: the parts it needs, and when it arrived (for durations)."""

    def __init__(self, request: Request, body: dict[str, Any], size: int = 0) -> None:
        self.arrived_ns = time.monotonic_ns()
        self.size = size  # the body's bytes, held while the request waits
        self.request = request
        self.svc = Service.of(request)
        self.name = info.model_name(body)
        # A peer's model has no entry here: no defaults, no keep_alive (the peer's own).
        peer = self.svc.peers.route(self.name)
        self.entry: Entry | None = None if peer is not None else self.svc.pool.resolve(self.name)
        self.keep = keep_alive.take(body)
        self.stream = body.get("stream") is not False  # Ollama streams unless told not to
        warning = None
        if self.entry is not None:  # a peer's context is the peer's own
            warning = requests.context_warning(body, self.name, self.entry.config.context_size)
        if warning is not None:
            log.warning("%s", warning)

    def exchange(self) -> contextlib.AbstractAsyncContextManager[Exchange]:
        """The service's one path to the child (or the peer), applying ``keep_alive`` once
        leased."""
        target = self.name if self.entry is None else self.entry.name
        return self.svc.exchange(
            self.request, target, on_lease=self._apply_keep_alive, size=self.size
        )

    async def send(self, ex: Exchange, path: str, payload: dict[str, Any]) -> proxy.Answer:
        """Send ``payload`` to the child or peer (as OpenAI's API, under the name it knows);
        an error status becomes a ``ChildError``."""
        if self.entry is not None:
            apply_defaults(payload, self.entry.config, path)
        payload = {**payload, "model": ex.model}
        upstream = await ex.open("POST", path, _JSON_HEADERS, json.dumps(payload).encode())
        if upstream.status != 200:
            content = await ex.read(upstream)
            raise ChildError(upstream.status, child_message(upstream.status, content))
        return upstream

    async def refuse_embeddings(self) -> None:
        """A 400 that names the fix before a load, where llama-server would refuse."""
        if self.entry is not None:
            cannot = await asyncio.to_thread(embedding_refusal, self.entry.config)
            if cannot is not None:
                raise BadRequest(cannot)

    async def whole(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The child's whole JSON answer and when the model was ready (ns); the lease is
        given back before this returns."""
        async with self.exchange() as ex:
            ready_ns = time.monotonic_ns()
            content = await ex.read(await self.send(ex, path, payload))
        try:
            answer = json.loads(content)
        except ValueError as exc:
            raise UpstreamFailed(f"model {self.name!r}: its server's answer is not JSON") from exc
        return answer, ready_ns

    async def load_only(self, kind: str) -> Response:
        """Nothing to generate: load the model (Ollama's preload), or with ``keep_alive`` 0
        unload it without loading it first."""
        if self.keep == 0:
            if self.entry is not None:  # a peer unloads by its own rules
                await self.svc.unload(self.request, self.entry.name)
            return self.one(answers.load_answer(kind, self.name, "unload"))
        async with self.exchange():
            pass
        return self.one(answers.load_answer(kind, self.name, "load"))

    def one(self, answer: dict[str, Any]) -> Response:
        """A single object, as one NDJSON line when the client asked for a stream."""
        if self.stream:
            return Response(stream.line(answer), media_type=stream.MEDIA_TYPE)
        return JSONResponse(answer)

    def clock(self, ready_ns: int) -> answers.Clock:
        return answers.Clock(self.arrived_ns, ready_ns)

    def _apply_keep_alive(self) -> None:
        if self.keep is not None and self.entry is not None:
            self.svc.pool.set_keep_alive(self.entry, self.keep)


async def chat(request: Request) -> Response:
    raw = await request.body()
    body = read_json(raw)
    call = Call(request, body, len(raw))
    if not body.get("messages"):
        return await call.load_only("chat")
    payload = requests.chat_request({**body, "model": call.name}, call.stream)
    if payload.get("tools") and call.entry is not None:  # a peer decides for its own models
        refusal = await asyncio.to_thread(chat_templates.tools_refusal, call.entry.config)
        if refusal is not None:
            raise BadRequest(f"{call.name} does not support tools: {refusal}")
    return await _answer(call, "chat", "/v1/chat/completions", payload)


async def generate(request: Request) -> Response:
    raw = await request.body()
    body = read_json(raw)
    call = Call(request, body, len(raw))
    if not body.get("prompt") and not body.get("images"):
        return await call.load_only("generate")
    path, payload = requests.generate_request({**body, "model": call.name}, call.stream)
    if path == "/infill" and call.entry is not None:
        return await _infill(call, payload)
    return await _answer(call, "generate", path, payload)


async def _infill(call: Call, payload: dict[str, Any]) -> Response:
    """A generate with ``suffix``: llama-server's ``/infill``, answered whole (one NDJSON line
    when a stream was asked for); a model without fill-in-the-middle tokens gets a 400."""
    assert call.entry is not None  # generate sends only local models here
    header = await asyncio.to_thread(models.read_header_facts, call.entry.config)
    if header.info is not None and "insert" not in models.capabilities(call.entry.config, header):
        raise BadRequest(f"{call.name} does not support insert: its GGUF has no FIM tokens")
    answer, ready_ns = await call.whole("/infill", payload)
    now = time.monotonic_ns()
    return call.one(answers.infill_answer(call.name, answer, call.clock(ready_ns), now))


async def _answer(
    call: Call, kind: Literal["chat", "generate"], path: str, payload: dict[str, Any]
) -> Response:
    """A chat or generate answer: NDJSON lines as they come, or one object at the end; a
    streaming chat with ``send_loading_state`` gets the load's progress as ``thinking``."""
    if call.stream:

        async def relayed() -> Response:
            async with call.exchange() as ex:
                upstream = await call.send(ex, path, payload)
                clock = call.clock(time.monotonic_ns())
                lines = stream.NDJSONLines(stream.Stream(kind, call.name, clock))
                return ex.relay(upstream, lines)

        entry = call.entry
        loading = entry is not None and entry.config.send_loading_state and not entry.admitting()
        if kind == "chat" and entry is not None and loading:
            follow = call.svc.pool.events.follow
            return ProgressThenAnswer(relayed, follow, entry.name, OllamaFraming(call.name))
        return await relayed()
    answer, ready_ns = await call.whole(path, payload)
    build = answers.chat_answer if kind == "chat" else answers.generate_answer
    return JSONResponse(build(call.name, answer, call.clock(ready_ns), time.monotonic_ns()))


async def embed(request: Request) -> Response:
    raw = await request.body()
    body = read_json(raw)
    call = Call(request, body, len(raw))
    inputs = requests.embed_inputs(body, "input")
    if not inputs:
        await call.load_only("generate")
        return JSONResponse({"model": call.name, "embeddings": []})
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions <= 0):
        raise BadRequest(f"dimensions: must be a whole number > 0, got {json.dumps(dimensions)}")
    await call.refuse_embeddings()
    payload = {"model": call.name, "input": inputs, **requests.sampling(body)}
    answer, ready_ns = await call.whole("/v1/embeddings", payload)
    now = time.monotonic_ns()
    return JSONResponse(
        answers.embed_answer(call.name, answer, dimensions, call.clock(ready_ns), now)
    )


async def embeddings(request: Request) -> Response:
    """The legacy endpoint: one ``prompt``, one ``embedding``."""
    raw = await request.body()
    body = read_json(raw)
    call = Call(request, body, len(raw))
    inputs = requests.embed_inputs(body, "prompt")
    if not inputs:
        await call.load_only("generate")
        return JSONResponse({"embedding": []})
    await call.refuse_embeddings()
    answer, _ = await call.whole("/v1/embeddings", {"model": call.name, "input": inputs})
    data = answer.get("data") or [{}]
    return JSONResponse({"embedding": data[0].get("embedding", [])})


def routes() -> list[BaseRoute]:
    # `/` (Ollama's "Ollama is running", or the status page for a browser) is status_page's.
    return [
        Route("/api/version", info.version, methods=["GET"]),
        Route("/api/tags", info.tags, methods=["GET"]),
        Route("/api/ps", info.ps, methods=["GET"]),
        Route("/api/show", info.show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
        *manage.routes(),
    ]
