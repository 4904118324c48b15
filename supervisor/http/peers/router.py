"""The one place that decides whether a request goes to a peer: ASGI middleware in front of
the routes.

Owns the decision (a POST whose JSON ``model``, or Ollama's ``name``, is a peer's model goes
to that peer at the same path, under the peer's own name for it; everything else goes on to
corral's routes, untouched), answering a down peer with a 502 in the route's error shape, and
adding the peers' models to ``/v1/models``, ``/api/tags`` and ``/running``. It sits inside
``RequireKey``: a client needs this corral's key to use a peer's model, and that key stays
here (``forward``). Without peers it passes every request straight through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.generator.settings import Config
from corral.supervisor.errors import ServeError, UpstreamFailed
from corral.supervisor.http import direct_body, proxy
from corral.supervisor.http.peers import lists
from corral.supervisor.http.peers.forward import forward
from corral.supervisor.http.peers.table import PeerTable, Route

log = logging.getLogger("corral")

#: How long ``/running`` waits for a peer's own list: a down peer must not stall it.
RUNNING_TIMEOUT_S = 2.0


def decide(table: PeerTable, body: bytes) -> tuple[Route | None, bytes]:
    """The peer a request body goes to (None: a local model), and the body to send it.

    A client that used an alias gets the body rewritten to the name the peer knows.
    """
    # Most bodies name no peer's model: skip parsing them twice. JSON may write / as \/.
    if not any(
        name.encode() in body or name.replace("/", "\\/").encode() in body for name in table.routes
    ):
        return None, body
    try:
        payload = json.loads(body)
    except ValueError:
        return None, body  # the route answers the 400
    if not isinstance(payload, dict):
        return None, body
    key = "model" if payload.get("model") else "name"  # `name`: Ollama's older spelling
    route = table.route(payload.get(key))
    if route is None:
        return None, body
    if payload[key] != route.model:
        payload[key] = route.model
        body = json.dumps(payload).encode()
    return route, body


class PeerRouter:
    def __init__(
        self,
        app: ASGIApp,
        config: Callable[[], Config],
        upstream: Callable[[], proxy.Upstream],
        exchanged: frozenset[str] = frozenset(),
    ) -> None:
        """``exchanged``: paths whose routes reach peers through ``Service.exchange``
        themselves (Ollama's, translated to OpenAI's API): passed on to them untouched."""
        self.app = app
        self.exchanged = exchanged
        self.config = config
        self.upstream = upstream
        self.created = time.time()
        self._built: tuple[Config, PeerTable] | None = None

    def table(self) -> PeerTable:
        """The table of the running config: built again (key files read again) on reload."""
        config = self.config()
        if self._built is None or self._built[0] is not config:
            self._built = (config, PeerTable.from_config(config))
        return self._built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        table = self.table() if scope["type"] == "http" else None
        if table is None or not table.routes:
            await self.app(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"] not in self.exchanged:
            await self._post(table, scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] in lists.MERGED:
            await self._merged(table, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _post(self, table: PeerTable, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive)
        except ServeError as exc:  # too large, too slow: limits' answers
            await _error(scope, exc)(scope, receive, send)
            return
        route, body = decide(table, body)
        if route is None:
            await self.app(scope, _replay(body, receive), send)
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("ascii", "replace")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("ascii", "replace")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            response = await forward(self.upstream(), route, "POST", path, headers, body)
        except ServeError as exc:
            log.error("request error: POST %s: %s", scope["path"], exc.message)
            response = _error(scope, exc)
        await response(scope, receive, send)

    async def _merged(self, table: PeerTable, scope: Scope, receive: Receive, send: Send) -> None:
        """The route's own list, then the peers' models appended to it."""
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(direct_body.without(scope), receive, keep)  # ``keep`` needs the body
        body = b"".join(chunks)
        path = scope["path"]
        if start.get("status") == 200:
            answer = json.loads(body)
            if path == "/v1/models":
                extra = lists.openai_models(table, int(self.created))
            elif path == "/api/tags":
                extra = lists.ollama_tags(table, self.created)
            else:
                extra = await self._running(table)
            body = json.dumps(lists.merge(path, answer, extra)).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _running(self, table: PeerTable) -> list[dict[str, Any]]:
        found = await asyncio.gather(*(self._peer_running(table, name) for name in table.peers))
        return [entry for entries in found for entry in entries]

    async def _peer_running(self, table: PeerTable, name: str) -> list[dict[str, Any]]:
        peer = table.peers[name]
        if peer.key_error is not None:
            return []
        try:
            async with asyncio.timeout(RUNNING_TIMEOUT_S):
                answer = await self.upstream().open(
                    "GET", peer.url, "/running", {}, b"", auth=peer.authorization
                )
                body = await proxy.read(answer, f"peer {name}'s /running")
            if answer.status != 200:
                return []
            return lists.running(table, name, json.loads(body))
        except (UpstreamFailed, TimeoutError, ValueError) as exc:
            # A down peer runs nothing that could be listed; its requests say why (502).
            log.debug("peer %s: /running unavailable: %s", name, exc)
            return []


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the route the body already read, then waits as the original."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(scope: Scope, exc: ServeError) -> Response:
    """The route's error shape: Ollama's ``{"error": "..."}`` on /api/, else OpenAI's."""
    if scope["path"].startswith("/api/"):
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)
    return exc.response()
