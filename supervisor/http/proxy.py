"""Passing one request to a child and its answer back, chunk by chunk.

Owns the upstream HTTP clients (children through ``client``'s kept-alive pool, the cheapest
measured here; peers, which may be remote and TLS, through ``peer_client``'s httpx client),
applying a ``transform.Transform`` to an answer on its way (Ollama's NDJSON), and what a
broken upstream or a departed client does to the exchange. Which headers cross is ``headers``'.
It does not choose the child (``runtime.pool``), hold the lease (``service``) or read the
request's meaning (``api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from corral.supervisor.errors import (
    BadRequest,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
    speaks_anthropic,
)
from corral.supervisor.http import client, client_pool, direct_body, lazy, peer_client
from corral.supervisor.http.headers import answer_headers, forwarded_raw, request_head
from corral.supervisor.http.transform import Transform

if TYPE_CHECKING:
    import httpx
else:
    # Peers only: a start (socket activation: a waiting request) skips its import.
    httpx = lazy.module("httpx")

log = logging.getLogger("corral")

Done = Callable[[], Awaitable[object]]


class Answer(Protocol):
    """An answer coming in: a child's (``client.Answer``) or a peer's
    (``peer_client.PeerAnswer``). Reading it raises ``OSError`` when the other end breaks."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...

    def header(self, name: bytes) -> bytes | None: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...

    def divert(self, sink: Callable[[bytes], bool]) -> None: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class Upstream:
    """The client side of every child (``client_pool.Pool``) and peer (one httpx client);
    connections reused across requests."""

    def __init__(self, silence: float = math.inf) -> None:
        self._peers: httpx.AsyncClient | None = None
        self.children = client_pool.Pool()
        #: Seconds a child may send nothing while a request waits on it (upstream_timeout).
        self.silence = silence

    def _peer_client(self) -> httpx.AsyncClient:
        if self._peers is None or self._peers.is_closed:
            self._peers = peer_client.new_client()
        return self._peers

    async def close(self) -> None:
        self.children.close()
        if self._peers is not None:
            await self._peers.aclose()

    async def to_child(
        self,
        method: str,
        port: int,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        model: str,
        auth: str | None = None,
    ) -> Answer:
        """Send a request to the child on ``port``; ``auth``: its key's ``Authorization``."""
        try:
            head = request_head(method, path, port, forwarded_raw(headers, auth), len(body))
        except ValueError as exc:
            raise BadRequest(f"model {model!r}: cannot forward this request: {exc}") from exc
        try:
            return await self.children.request(method, port, head, body, self.silence)
        except client.Silent as exc:
            raise UpstreamTimeout(f"model {model!r}: {exc}; is it hung?") from exc
        except client.Broken as exc:
            raise UpstreamFailed(f"model {model!r}: {exc} (it may have crashed)") from exc
        except OSError as exc:
            raise UpstreamFailed(f"model {model!r}: cannot reach its server: {exc}") from exc

    async def open(
        self,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        auth: str | None = None,
    ) -> Answer:
        """Send a request to a peer: ``url`` its base URL, ``path`` (and query) as the client
        encoded it; ``auth``: the ``Authorization`` it expects. An ``UpstreamFailed`` says
        why, for the caller to name the peer (``peers.forward``)."""
        return await peer_client.send(self._peer_client(), method, url, path, headers, body, auth)


async def read(upstream: Answer, model: str) -> bytes:
    """A whole answer's body: a child that dies mid-answer becomes a 502."""
    try:
        return await upstream.read()
    except OSError as exc:
        upstream.close()
        raise UpstreamFailed(
            f"model {model!r}: its server stopped mid-answer (it may have crashed): {exc}"
        ) from exc
    finally:
        upstream.release()


async def whole(upstream: Answer, model: str, transform: Transform | None = None) -> Response:
    """A whole answer, read before replying (so a child's death is a clean 502)."""
    content = await read(upstream, model)
    headers = answer_headers(upstream.headers)
    if transform is not None:
        content = transform.feed(content) + transform.close(broken=False)
        if transform.media_type is not None:
            headers = [(b"content-type", transform.media_type.encode())]
    response = Response(content, upstream.status)
    response.raw_headers = [*headers, (b"content-length", b"%d" % len(content))]
    return response


class Relay(Response):
    """An ASGI response that relays the child's body as it arrives, nothing buffered.

    It watches the client at the same time: when the client hangs up, closing (not
    releasing) the upstream connection makes llama-server see it and stop generating, which
    frees its slot for others. ``on_done`` runs when it ends, either way (the lease goes back).
    """

    def __init__(
        self,
        upstream: Answer,
        model: str,
        on_done: Done,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(status_code=upstream.status)
        self.upstream = upstream
        self.model = model
        self.on_done = on_done
        self.transform = transform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        complete = False
        try:
            headers = answer_headers(self.upstream.headers)
            if self.transform is not None and self.transform.media_type is not None:
                # a body of corral's own
                headers = [(b"content-type", self.transform.media_type.encode())]
            await send(
                {"type": "http.response.start", "status": self.upstream.status, "headers": headers}
            )
            direct = direct_body.lane(scope)
            if direct is not None and direct.ready():
                self.upstream.divert(self._writer(direct))
            pump = asyncio.ensure_future(self._pump(send, scope["path"]))
            watch = asyncio.ensure_future(until_disconnect(receive))
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            watch.cancel()
            if not pump.done():
                pump.cancel()
                log.info("request cancelled: model %s: client hung up mid-answer", self.model)
            with contextlib.suppress(asyncio.CancelledError, OSError):
                complete = await pump
        finally:
            if complete:
                self.upstream.release()
            else:
                self.upstream.close()
            await self.on_done()

    def _writer(self, direct: direct_body.DirectBody) -> Callable[[bytes], bool]:
        """What the child's connection calls with each body piece as it is read: the piece,
        transformed, written to the client at once; False while the client is not keeping up
        (the piece then waits for ``_pump``)."""
        transform = self.transform

        def write(chunk: bytes) -> bool:
            if not direct.writable():
                return False
            out = chunk if transform is None else transform.feed(chunk)
            if out:
                direct.write(out)
            return True

        return write

    async def _pump(self, send: Send, path: str) -> bool:
        """Copy (or transform) body chunks; True when the child's answer ended properly."""
        transform = self.transform
        broken = False
        try:
            async for chunk in self.upstream.iter_any():
                out = chunk if transform is None else transform.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except OSError as exc:
            log.error("request error: model %s: server broke mid-answer: %s", self.model, exc)
            broken = True
        last = b"" if transform is None else transform.close(broken)
        if broken and (transform is None or transform.media_type is None):
            last += self._broken_note(path)  # still the child's framing: its SSE gets the note
        await send({"type": "http.response.body", "body": last})
        return not broken

    def _broken_note(self, path: str) -> bytes:
        """A last SSE event telling a streaming client why its answer stopped short, in the
        shape the path's clients read (Anthropic's SDKs want an ``error`` event)."""
        if b"text/event-stream" not in (self.upstream.header(b"content-type") or b""):
            return b""
        message = f"model {self.model!r}: its server stopped mid-answer (it may have crashed)"
        event = error_body(502, message, "upstream_error", path)
        name = "event: error\n" if speaks_anthropic(path) else ""
        return f"{name}data: {json.dumps(event)}\n\n".encode()


async def until_disconnect(receive: Receive) -> None:
    """Return when the client has hung up (after its body, receive() waits for just that)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
