"""Passing one request to a child and its answer back, chunk by chunk.

Owns the upstream HTTP clients (children through ``client``'s kept-alive pool, the cheapest
measured here; peers, which may be remote and TLS, through one aiohttp session), applying a
``transform.Transform`` to an answer on its way (Ollama's NDJSON), and what a broken
upstream or a departed client does to the exchange. Which headers cross is ``headers``'.
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
from typing import Protocol

import aiohttp
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from corral.supervisor.errors import BadRequest, UpstreamFailed, UpstreamTimeout
from corral.supervisor.http import client, client_pool
from corral.supervisor.http.headers import answer_headers, forwarded_headers, forwarded_raw
from corral.supervisor.http.transform import Transform

log = logging.getLogger("corral")

Done = Callable[[], Awaitable[object]]


class Answer(Protocol):
    """An answer coming in: a child's (``client.Answer``) or a peer's (``PeerAnswer``)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...

    def header(self, name: bytes) -> bytes | None: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class PeerAnswer:
    """aiohttp's answer from a peer, read as an ``Answer``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = [(k.lower(), v) for k, v in response.raw_headers]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def read(self) -> bytes:
        return await self._response.read()

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class Upstream:
    """The client side of every child (``client_pool.Pool``) and peer (one aiohttp session);
    connections reused across requests."""

    def __init__(self, silence: float = math.inf) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.children = client_pool.Pool()
        #: Seconds a child may send nothing while a request waits on it (upstream_timeout).
        self.silence = silence

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                auto_decompress=False,
                # A proxy keeps no cookies: one client's must never reach another's request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        self.children.close()
        if self._session is not None:
            await self._session.close()

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
            head = client.request_head(method, path, port, forwarded_raw(headers, auth), len(body))
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
        headers: Mapping[str, str],
        body: bytes,
        *,
        model: str,
        auth: str | None = None,
    ) -> Answer:
        """Send a request to a peer; ``auth``: the ``Authorization`` it expects."""
        sent = forwarded_headers(headers, auth)
        try:
            # encoded=True: the path goes out exactly as the client encoded it.
            response = await self.session().request(
                method,
                URL(url, encoded=True),
                headers=sent,
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ServerDisconnectedError as exc:
            raise UpstreamFailed(
                f"model {model!r}: its server closed the connection before answering "
                "(it may have crashed)"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailed(f"model {model!r}: cannot reach its server: {exc}") from exc
        return PeerAnswer(response)


async def read(upstream: Answer, model: str) -> bytes:
    """A whole answer's body: a child that dies mid-answer becomes a 502."""
    try:
        return await upstream.read()
    except (aiohttp.ClientError, OSError) as exc:
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
            pump = asyncio.ensure_future(self._pump(send))
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

    async def _pump(self, send: Send) -> bool:
        """Copy (or transform) body chunks; True when the child's answer ended properly."""
        transform = self.transform
        broken = False
        try:
            async for chunk in self.upstream.iter_any():
                out = chunk if transform is None else transform.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except (aiohttp.ClientError, OSError) as exc:
            log.error("request error: model %s: server broke mid-answer: %s", self.model, exc)
            broken = True
        last = b"" if transform is None else transform.close(broken)
        if broken and (transform is None or transform.media_type is None):
            last += self._broken_note()  # still the child's framing: its SSE gets the note
        await send({"type": "http.response.body", "body": last})
        return not broken

    def _broken_note(self) -> bytes:
        """A last SSE event telling a streaming client why its answer stopped short."""
        if b"text/event-stream" not in (self.upstream.header(b"content-type") or b""):
            return b""
        message = f"model {self.model!r}: its server stopped mid-answer (it may have crashed)"
        event = {"error": {"message": message, "type": "upstream_error", "code": 502}}
        return f"data: {json.dumps(event)}\n\n".encode()


async def until_disconnect(receive: Receive) -> None:
    """Return when the client has hung up (after its body, receive() waits for just that)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
