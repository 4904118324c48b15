"""A fake llama-server: the same HTTP surface, answers in no time, and faults on demand.

Run as ``python tests/fake_upstream.py --port P [flags]``; ``--help`` lists the faults. Like
llama-swap's cmd/simple-responder, it is a real program so that corral's tests exercise real
processes, pipes, signals and sockets without a model.

What it imitates: ``GET /health`` (503 "Loading model" while loading, then 200), 503 on every
other path while loading, ``GET /v1/models``, ``GET /props``, and the completion-like POST
endpoints, each in its OpenAI (or llama.cpp) shape, streamed as server-sent events when
``"stream": true``.
Every answer says who answered (``--name`` in the text and in ``"upstream"``) and echoes the
request body it received (``"received"``; the first chunk when streaming), so a test can see
which child answered and what corral forwarded. Like llama-server, every answer allows any
origin (``Access-Control-Allow-Origin`` echoed, with credentials), and env LLAMA_API_KEY
makes every path but the public ones (``/health``, ``/v1/models``) answer 401 without
``Authorization: Bearer <key>``.

Every request's arrival, end and a client hang-up are logged on stderr, one line each:
``request POST /v1/chat/completions stream=True``, ``done ... chunks=5``,
``disconnected ... after 2 chunks``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
UNAUTHORIZED = {
    "error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
}
#: What llama-server answers without a key (tools/server/server.cpp's public endpoints).
PUBLIC = frozenset({"/health", "/v1/health", "/models", "/v1/models", "/api/tags"})


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # flushed: a crash uses os._exit


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="fake", help="shown in every answer")
    p.add_argument(
        "--model-field", help="every answer's `model`, as llama-server's (its file path)"
    )
    p.add_argument("--load-seconds", type=float, default=0.0, help="503 on /health this long")
    p.add_argument("--crash-during-load", action="store_true", help="exit 3 while loading")
    p.add_argument("--crash-after-seconds", type=float, help="exit 5 this long after ready")
    p.add_argument("--crash-after-chunks", type=int, help="exit 4 after sending N chunks")
    p.add_argument("--hang", action="store_true", help="never answer completions")
    p.add_argument("--never-ready", action="store_true", help="503 on /health forever")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--tokens", type=int, default=5, help="tokens per answer (>= 1)")
    p.add_argument(
        "--token-delay", type=float, default=0.0, help="seconds per token, streamed or not"
    )
    p.add_argument("--fail-bind", action="store_true", help="exit 1 as if the port were taken")
    p.add_argument("--stderr-lines", type=int, default=0, help="log lines to print at start")
    p.add_argument("--spawn-grandchild", action="store_true", help="start a sleeping child")
    p.add_argument(
        "--setsid-grandchild", action="store_true", help="start one in its own session, as a daemon"
    )
    p.add_argument("--say", action="append", default=[], help="a log line to print at start, raw")
    return p.parse_args(argv)


class Fake:
    """The fake's state and its handlers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loaded = False
        self.probes = 0  # GET /health while loading

    def tokens(self) -> list[str]:
        return [f"{self.args.name}:"] + [f" t{i}" for i in range(1, max(self.args.tokens, 1))]

    @web.middleware
    async def key_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = os.environ.get("LLAMA_API_KEY")
        if key and request.path not in PUBLIC:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if sent != key and request.headers.get("X-Api-Key") != key:
                say(f"unauthorized {request.method} {request.path}")
                return web.json_response(UNAUTHORIZED, status=401)
        return await handler(request)

    @web.middleware
    async def loading_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.loaded and request.path != "/health":
            return web.json_response(LOADING, status=503)
        return await handler(request)

    async def health(self, request: web.Request) -> web.StreamResponse:
        if not self.loaded:
            self.probes += 1
            return web.json_response(LOADING, status=503)
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.StreamResponse:
        entry = {"id": self.args.name, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [entry]})

    async def props(self, request: web.Request) -> web.StreamResponse:
        # The keys clients read from llama-server's GET /props; model_path is its file's.
        path = self.args.model_field or f"/models/{self.args.name}.gguf"
        settings = {"n_ctx": 1024, "params": {"temperature": 0.8}}
        return web.json_response(
            {
                "default_generation_settings": settings,
                "total_slots": 1,
                "model_alias": path,
                "model_path": path,
                "modalities": {"vision": False, "audio": False},
                "upstream": self.args.name,
            }
        )

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        stream = bool(body.get("stream"))
        say(f"request {request.method} {request.path} stream={stream}")
        if self.args.hang:
            return await self.hang(request)
        shape = SHAPES[request.path]
        if not stream or shape.chunks is None:
            # As slow as the stream would be: a whole answer is generated token by token too.
            await asyncio.sleep(self.args.token_delay * len(self.tokens()))
            answer = shape.whole(self, body, "".join(self.tokens()))
            say(f"done {request.method} {request.path} chunks=0")
            return web.json_response({**answer, "upstream": self.args.name, "received": body})
        chunks = shape.chunks(self, body, self.tokens())
        return await self.send_stream(request, chunks, shape.done)

    async def send_stream(
        self, request: web.Request, chunks: list[bytes], done: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sent = 0
        try:
            for chunk in chunks:
                if sent == self.args.crash_after_chunks:
                    say(f"crash {request.path} after {sent} chunks")
                    os._exit(4)
                if self.args.token_delay:
                    await asyncio.sleep(self.args.token_delay)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
                await response.write(chunk)
                sent += 1
            if done:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            # Cancelled: aiohttp saw the hang-up (handler_cancellation); reset: a write did.
            say(f"disconnected {request.method} {request.path} after {sent} chunks")
            raise
        say(f"done {request.method} {request.path} chunks={sent}")
        return response

    async def hang(self, request: web.Request) -> web.StreamResponse:
        try:
            await asyncio.Event().wait()  # until aiohttp cancels us: the client hung up
        except asyncio.CancelledError:
            say(f"disconnected {request.method} {request.path} after 0 chunks")
            raise
        raise AssertionError("unreachable")

    async def cors(self, request: web.Request, response: web.StreamResponse) -> None:
        # llama-server allows every origin, credentials included; corral must not relay it.
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
        response.headers["Access-Control-Allow-Credentials"] = "true"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.key_gate, self.loading_gate])
        app.on_response_prepare.append(self.cors)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/props", self.props)
        for path in SHAPES:
            app.router.add_post(path, self.complete)
        return app


def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()


def with_received(chunks: list[dict[str, Any]], body: dict[str, Any]) -> list[bytes]:
    chunks[0] = {**chunks[0], "received": body}
    return [sse(c) for c in chunks]


class Shape:
    """One endpoint's answer format: whole, as stream chunks (None: never streams, like
    llama-server's embeddings), and whether ``data: [DONE]`` ends the stream."""

    def __init__(
        self,
        whole: Callable[[Fake, dict[str, Any], str], dict[str, Any]],
        chunks: Callable[[Fake, dict[str, Any], list[str]], list[bytes]] | None,
        done: bool = True,
    ) -> None:
        self.whole, self.chunks, self.done = whole, chunks, done


def _usage(fake: Fake) -> dict[str, int]:
    n = max(fake.args.tokens, 1)
    return {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}


def _timings(fake: Fake) -> dict[str, float]:
    """llama-server's ``timings`` (its fields that corral reads): 50 tokens/s, always."""
    n = max(fake.args.tokens, 1)
    return {
        "prompt_n": 3,
        "prompt_ms": 6.0,
        "predicted_n": n,
        "predicted_ms": n * 20.0,
        "predicted_per_second": 50.0,
    }


def _model(fake: Fake, body: dict[str, Any]) -> Any:
    return fake.args.model_field or body.get("model") or fake.args.name


def _head(fake: Fake, body: dict[str, Any], kind: str) -> dict[str, Any]:
    model = _model(fake, body)
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {"id": f"{prefix}-fake", "object": kind, "created": int(time.time()), "model": model}


def chat_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    head = _head(fake, body, "chat.completion")
    return {**head, "choices": [choice], "usage": _usage(fake), "timings": _timings(fake)}


def chat_chunks(fake: Fake, body: dict[str, Any], tokens: list[str]) -> list[bytes]:
    head = _head(fake, body, "chat.completion.chunk")
    out = [
        {**head, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
        for t in tokens
    ]
    out[0]["choices"][0]["delta"]["role"] = "assistant"
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    out.append({**head, "choices": [last], "timings": _timings(fake)})
    return with_received(out, body)


def text_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
    return {**_head(fake, body, "text_completion"), "choices": [choice], "usage": _usage(fake)}


def text_chunks(fake: Fake, body: dict[str, Any], tokens: list[str]) -> list[bytes]:
    head = _head(fake, body, "text_completion")
    out = [
        {**head, "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": None}]}
        for t in tokens
    ]
    out[-1]["choices"][0]["finish_reason"] = "stop"
    return with_received(out, body)


def native_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    n = max(fake.args.tokens, 1)
    return {"content": text, "stop": True, "model": fake.args.name, "tokens_predicted": n}


def native_chunks(fake: Fake, body: dict[str, Any], tokens: list[str]) -> list[bytes]:
    out = [{"content": t, "stop": False} for t in tokens]
    out.append({"content": "", "stop": True, "model": fake.args.name})
    return with_received(out, body)  # llama.cpp's own endpoints end without [DONE]


def embed_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    inputs = body.get("input", "")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(item))}
        for i, item in enumerate(items)
    ]
    return {"object": "list", "model": _model(fake, body), "data": data}


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 4) for b in digest[:8]]


def rerank_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    documents = body.get("documents") or []
    query = set(str(body.get("query", "")).split())
    scored = [
        {"index": i, "relevance_score": float(len(query & set(str(d).split())))}
        for i, d in enumerate(documents)
    ]
    scored.sort(key=lambda r: -float(r["relevance_score"]))
    return {"object": "list", "model": _model(fake, body), "results": scored}


def responses_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    item = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant"}
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": _model(fake, body),
        "output": [{**item, "content": content}],
    }


def responses_chunks(fake: Fake, body: dict[str, Any], tokens: list[str]) -> list[bytes]:
    whole = responses_whole(fake, body, "".join(tokens))
    # As llama-server's: the opening events' response has no `model` (nor output).
    opening = {"id": whole["id"], "object": "response", "status": "in_progress"}
    created = {"type": "response.created", "response": opening}
    progress = {"type": "response.in_progress", "response": opening}
    deltas = [{"type": "response.output_text.delta", "delta": t} for t in tokens]
    events: list[dict[str, Any]] = [{**created, "received": body}, progress, *deltas]
    events.append({"type": "response.completed", "response": whole})
    return [sse(e, str(e["type"])) for e in events]


def messages_whole(fake: Fake, body: dict[str, Any], text: str) -> dict[str, Any]:
    usage = {"input_tokens": 3, "output_tokens": len(fake.tokens())}
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": _model(fake, body),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def messages_chunks(fake: Fake, body: dict[str, Any], tokens: list[str]) -> list[bytes]:
    """Anthropic's stream, as llama-server sends it: each event named, no [DONE]."""
    whole = messages_whole(fake, body, "")
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**whole, "content": []}, "received": body},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in tokens
        ),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": whole["usage"]},
        {"type": "message_stop"},
    ]
    return [sse(e, str(e["type"])) for e in events]


SHAPES: dict[str, Shape] = {
    "/v1/chat/completions": Shape(chat_whole, chat_chunks),
    "/v1/completions": Shape(text_whole, text_chunks),
    "/completion": Shape(native_whole, native_chunks, done=False),
    "/infill": Shape(native_whole, native_chunks, done=False),
    "/v1/embeddings": Shape(embed_whole, None),
    "/v1/rerank": Shape(rerank_whole, None),
    "/v1/responses": Shape(responses_whole, responses_chunks, done=False),
    "/v1/messages": Shape(messages_whole, messages_chunks, done=False),
}


def main(args: argparse.Namespace) -> int:
    for i in range(args.stderr_lines):
        say(f"log line {i + 1} of {args.stderr_lines}")
    for line in args.say:
        say(line)
    if args.setsid_grandchild:
        # Out of the child's process group (and session): a group signal misses it.
        escaped = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        say(f"setsid grandchild pid={escaped.pid}")
    if args.spawn_grandchild:
        # Same process group, and it inherits stdout/stderr: the pipe stays open until the
        # grandchild dies too. Never waited for: it is there to be killed by the supervisor.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        say(f"grandchild pid={child.pid}")
    if args.fail_bind:
        return bind_failed(args, "Address already in use (simulated)")
    return asyncio.run(serve(args))


async def serve(args: argparse.Namespace) -> int:
    fake = Fake(args)
    loop = asyncio.get_running_loop()
    # handler_cancellation: a client hang-up cancels its handler, as it stops llama-server's
    # generation; the handler logs it.
    runner = web.AppRunner(
        fake.app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
    except OSError as exc:
        await runner.cleanup()
        return bind_failed(args, exc.strerror or str(exc))
    say(f"server is listening on http://{args.host}:{args.port}")
    stop = asyncio.Event()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("ignoring SIGTERM")
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if args.crash_during_load:
        loop.call_later(max(args.load_seconds / 2, 0.1), exit_now, 3, "failed to load model")
    elif not args.never_ready:
        loop.call_later(args.load_seconds, loaded, fake, loop, args.crash_after_seconds)
    await stop.wait()
    say("received SIGTERM, shutting down")
    await runner.cleanup()
    return 0


def loaded(fake: Fake, loop: asyncio.AbstractEventLoop, crash_after: float | None) -> None:
    fake.loaded = True
    say(f"model loaded at={time.time():.6f} probes={fake.probes}")
    if crash_after is not None:
        loop.call_later(crash_after, exit_now, 5, "crashed while serving")


def exit_now(code: int, why: str) -> None:
    say(f"error: {why}; exiting with code {code}")
    os._exit(code)


def bind_failed(args: argparse.Namespace, why: str) -> int:
    say(f"couldn't bind HTTP server socket, hostname: {args.host}, port: {args.port}: {why}")
    return 1


if __name__ == "__main__":
    sys.exit(main(parse()))
