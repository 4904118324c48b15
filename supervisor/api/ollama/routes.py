"""The Ollama-compatible routes, answered by the running llama-server.

Owns ``/`` ("Ollama is running"), ``/api/version``, ``/api/tags``, ``/api/ps``,
``/api/show``, ``/api/chat``, ``/api/generate``, ``/api/embed`` and ``/api/embeddings``:
reading the request, holding a lease on the model while its child answers, applying the
client's ``keep_alive``, and streaming NDJSON while watching for the client to leave. Every
error leaves in Ollama's shape, ``{"error": "..."}``, with the status corral chose. The
shapes themselves are ``ollama``'s; loading and unloading are the pool's.

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
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from corral.generator.settings import ModelConfig
from corral.supervisor.api.ollama import answers as ollama_answers
from corral.supervisor.api.ollama import models as ollama_models
from corral.supervisor.api.ollama import requests as ollama
from corral.supervisor.api.ollama import stream as ollama_stream
from corral.supervisor.errors import BadRequest, ServeError, UpstreamFailed
from corral.supervisor.http import keep_alive
from corral.supervisor.http.defaults import apply_defaults
from corral.supervisor.http.json_body import read_json
from corral.supervisor.http.proxy import until_disconnect
from corral.supervisor.runtime import chat_templates
from corral.supervisor.runtime.entries import Slot
from corral.supervisor.service import Service

log = logging.getLogger("corral")

NDJSON = "application/x-ndjson"
_JSON_HEADERS = {"Content-Type": "application/json"}
Handler = Callable[[Request], Awaitable[Response]]


class ChildError(ServeError):
    """The child answered with an error status: relayed with its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def ollama_errors(handler: Handler) -> Handler:
    """Errors in Ollama's shape: its clients read ``error`` as a string."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ServeError as exc:
            if exc.status >= 500:
                log.error("request error: %s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    return wrapped


# -- requests for one model ---------------------------------------------------------------


class Call:
    """One request for a model: the parts it needs, and when it arrived (for durations)."""

    def __init__(self, request: Request, body: dict[str, Any]) -> None:
        self.arrived_ns = time.monotonic_ns()
        self.svc = Service.of(request)
        self.name = model_name(body)
        self.slot: Slot = self.svc.pool.resolve(self.name)
        self.keep = keep_alive.take(body)
        self.stream = body.get("stream") is not False  # Ollama streams unless told not to
        warning = ollama.context_warning(body, self.name, self.slot.config.context_size)
        if warning is not None:
            log.warning("%s", warning)

    async def open(self, path: str, payload: dict[str, Any]) -> Opened:
        """Lease the model, apply ``keep_alive`` and send ``payload`` to its child."""
        apply_defaults(payload, self.slot.config, path)
        stack = contextlib.AsyncExitStack()
        lease = await stack.enter_async_context(self.svc.pool.lease(self.slot.name))
        try:
            clock = ollama_answers.Clock(self.arrived_ns, time.monotonic_ns())
            self._apply_keep_alive()
            data = json.dumps(payload).encode()
            upstream = await self.svc.upstream.open(
                "POST", lease.base_url + path, _JSON_HEADERS, data, model=self.slot.name
            )
            if upstream.status != 200:
                content = await _read(upstream, self.slot.name)
                raise ChildError(
                    upstream.status, ollama_answers.upstream_error(upstream.status, content)
                )
            return Opened(upstream, stack, clock)
        except BaseException:
            await stack.aclose()
            raise

    async def whole(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], Opened]:
        """The child's whole JSON answer; the lease is given back before this returns."""
        opened = await self.open(path, payload)
        async with opened.stack:
            content = await _read(opened.upstream, self.slot.name)
        try:
            answer = json.loads(content)
        except ValueError as exc:
            raise UpstreamFailed(f"model {self.name!r}: its server's answer is not JSON") from exc
        return answer, opened

    async def load_only(self, kind: str) -> Response:
        """Nothing to generate: load the model (Ollama's preload), or with ``keep_alive`` 0
        unload it without loading it first."""
        if self.keep == 0:
            await self.svc.pool.unload(self.slot.name)
            return self.one(ollama_answers.load_answer(kind, self.name, "unload"))
        async with self.svc.pool.lease(self.slot.name):
            self._apply_keep_alive()
        return self.one(ollama_answers.load_answer(kind, self.name, "load"))

    def one(self, answer: dict[str, Any]) -> Response:
        """A single object, as one NDJSON line when the client asked for a stream."""
        if self.stream:
            return Response(_line(answer), media_type=NDJSON)
        return JSONResponse(answer)

    def _apply_keep_alive(self) -> None:
        if self.keep is not None:
            self.svc.pool.set_keep_alive(self.slot, self.keep)


@dataclass(frozen=True)
class Opened:
    """A child's answer being received, and the lease held until it has been."""

    upstream: aiohttp.ClientResponse
    stack: contextlib.AsyncExitStack
    clock: ollama_answers.Clock


async def _read(upstream: aiohttp.ClientResponse, model: str) -> bytes:
    try:
        return await upstream.read()
    except (aiohttp.ClientError, OSError) as exc:
        upstream.close()
        raise UpstreamFailed(
            f"model {model!r}: its server stopped mid-answer (it may have crashed): {exc}"
        ) from exc
    finally:
        upstream.release()


class NDJSONRelay(Response):
    """Ollama's NDJSON, translated from the child's events as they arrive, each line sent
    at once. A client that hangs up closes the upstream connection, which stops
    llama-server's generation; the lease is given back either way."""

    def __init__(self, opened: Opened, stream: ollama_stream.Stream) -> None:
        super().__init__(status_code=200)
        self.opened, self.stream = opened, stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.opened.upstream
        complete = False
        try:
            # No content-length (Response's default of 0 would end the body at once).
            headers = [(b"content-type", NDJSON.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            pump = asyncio.ensure_future(self._pump(send))
            watch = asyncio.ensure_future(until_disconnect(receive))
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            watch.cancel()
            if not pump.done():
                pump.cancel()
                log.info(
                    "request cancelled: model %s: client hung up mid-answer", self.stream.model
                )
            with contextlib.suppress(asyncio.CancelledError, OSError):
                complete = await pump
        finally:
            if complete:
                upstream.release()
            else:
                upstream.close()
            await self.opened.stack.aclose()

    async def _pump(self, send: Send) -> bool:
        try:
            async for chunk in self.opened.upstream.content.iter_any():
                await _send_lines(send, self.stream.feed(chunk, time.monotonic_ns()))
        except (aiohttp.ClientError, OSError) as exc:
            log.error(
                "request error: model %s: server broke mid-answer: %s", self.stream.model, exc
            )
        # After a break, close() reports it as Ollama's in-stream error object.
        await _send_lines(send, self.stream.close(time.monotonic_ns()))
        await send({"type": "http.response.body", "body": b""})
        return not self.stream.failed


async def _send_lines(send: Send, objects: list[dict[str, Any]]) -> None:
    if objects:
        body = "".join(_line(o) for o in objects).encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})


def _line(answer: dict[str, Any]) -> str:
    """One NDJSON line, written as compactly as Ollama writes it."""
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")) + "\n"


async def _body(request: Request) -> dict[str, Any]:
    return read_json(await request.body())


def model_name(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")  # `name` is /api/show's older spelling
    if not isinstance(name, str):
        raise BadRequest(f"model is required, as a name from GET /api/tags; got {name!r}")
    return name


# -- handlers -----------------------------------------------------------------------------


@ollama_errors
async def chat(request: Request) -> Response:
    body = await _body(request)
    call = Call(request, body)
    if not body.get("messages"):
        return await call.load_only("chat")
    payload = ollama.chat_request(body, call.stream)
    if payload.get("tools"):
        refusal = await asyncio.to_thread(chat_templates.tools_refusal, call.slot.config)
        if refusal is not None:
            raise BadRequest(f"{call.name} does not support tools: {refusal}")
    return await _answer(call, "chat", "/v1/chat/completions", payload)


@ollama_errors
async def generate(request: Request) -> Response:
    body = await _body(request)
    call = Call(request, body)
    if not body.get("prompt") and not body.get("images"):
        return await call.load_only("generate")
    path, payload = ollama.generate_request(body, call.stream)
    if path == "/infill":
        return await _infill(call, payload)
    return await _answer(call, "generate", path, payload)


async def _infill(call: Call, payload: dict[str, Any]) -> Response:
    """A generate with ``suffix``: llama-server's ``/infill``, answered whole (one NDJSON line
    when a stream was asked for); a model without fill-in-the-middle tokens gets a 400."""
    header = await asyncio.to_thread(ollama_models.read_header_facts, call.slot.config)
    if header.info is not None and "insert" not in ollama_models.capabilities(
        call.slot.config, header
    ):
        raise BadRequest(f"{call.name} does not support insert: its GGUF has no FIM tokens")
    answer, opened = await call.whole("/infill", payload)
    now = time.monotonic_ns()
    return call.one(ollama_answers.infill_answer(call.name, answer, opened.clock, now))


async def _answer(
    call: Call, kind: Literal["chat", "generate"], path: str, payload: dict[str, Any]
) -> Response:
    """A chat or generate answer: NDJSON lines as they come, or one object at the end."""
    if call.stream:
        opened = await call.open(path, payload)
        return NDJSONRelay(opened, ollama_stream.Stream(kind, call.name, opened.clock))
    answer, opened = await call.whole(path, payload)
    build = ollama_answers.chat_answer if kind == "chat" else ollama_answers.generate_answer
    return JSONResponse(build(call.name, answer, opened.clock, time.monotonic_ns()))


@ollama_errors
async def embed(request: Request) -> Response:
    body = await _body(request)
    call = Call(request, body)
    inputs = ollama.embed_inputs(body, "input")
    if not inputs:
        await call.load_only("generate")
        return JSONResponse({"model": call.name, "embeddings": []})
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions <= 0):
        raise BadRequest(f"dimensions: must be a whole number > 0, got {json.dumps(dimensions)}")
    payload = {"model": call.name, "input": inputs, **ollama.sampling(body)}
    answer, opened = await call.whole("/v1/embeddings", payload)
    now = time.monotonic_ns()
    return JSONResponse(
        ollama_answers.embed_answer(call.name, answer, dimensions, opened.clock, now)
    )


@ollama_errors
async def embeddings(request: Request) -> Response:
    """The legacy endpoint: one ``prompt``, one ``embedding``."""
    body = await _body(request)
    call = Call(request, body)
    inputs = ollama.embed_inputs(body, "prompt")
    if not inputs:
        await call.load_only("generate")
        return JSONResponse({"embedding": []})
    answer, _ = await call.whole("/v1/embeddings", {"model": call.name, "input": inputs})
    data = answer.get("data") or [{}]
    return JSONResponse({"embedding": data[0].get("embedding", [])})


@ollama_errors
async def show(request: Request) -> Response:
    slot = Service.of(request).pool.resolve(model_name(await _body(request)))
    # The first read of a GGUF header takes a moment (0.24 s for Gemma 3's 262k-token
    # vocabulary): off the event loop, so streams in flight don't stall.
    header = await asyncio.to_thread(ollama_models.read_header_facts, slot.config)
    facts = _facts(request, slot.config)
    return JSONResponse(ollama_models.show_answer(slot.config, facts, header))


@ollama_errors
async def tags(request: Request) -> Response:
    pool = Service.of(request).pool
    listed = [s.config for s in pool.slots.values() if not s.config.unlisted]
    return JSONResponse(
        {"models": [ollama_models.tag_entry(m, _facts(request, m)) for m in listed]}
    )


@ollama_errors
async def ps(request: Request) -> Response:
    pool = Service.of(request).pool
    now = time.time()
    models = [
        ollama_models.ps_entry(s.config, _facts(request, s.config), pool.expires_at(s), now)
        for s in pool.slots.values()
        if s.running()
    ]
    return JSONResponse({"models": models})


def _facts(request: Request, model: ModelConfig) -> ollama_models.FileFacts:
    """The model file's size and time; a ``cmd`` model without a file reads as empty."""
    try:
        stat = os.stat(model.path) if model.path is not None else None
    except OSError:
        stat = None
    if stat is None:
        return ollama_models.FileFacts(0, Service.of(request).started_at)
    return ollama_models.FileFacts(stat.st_size, stat.st_mtime)


async def version(request: Request) -> Response:
    return JSONResponse({"version": ollama.VERSION})


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


def routes() -> list[BaseRoute]:
    # GET routes answer HEAD too (starlette adds it): clients probe `/` with HEAD.
    return [
        Route("/", root, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
    ]
