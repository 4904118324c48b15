"""The HTTP client that talks to peers: one httpx client, and a peer's answer as the proxy
reads it.

Owns the client's settings (no cookies kept, no redirect followed, nothing taken from the
environment, the system's CAs, a connect timeout and no other), sending one request with its
path exactly as the client encoded it, what a failure to get an answer says, and
``PeerAnswer``: httpx's answer read as ``proxy.Answer``, its errors those of a child's
answer (``client.Broken``). Which headers cross is ``headers``'; which peer, and with which
key, is ``peers``'. Children are reached through ``client``, which costs less per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, ClassVar

from corral.supervisor.errors import BadRequest, UpstreamFailed
from corral.supervisor.http import lazy
from corral.supervisor.http.client import Broken
from corral.supervisor.http.headers import first_value, forwarded_raw

if TYPE_CHECKING:
    import httpx
else:
    # Peers only: a start (socket activation: a waiting request) skips its import.
    httpx = lazy.module("httpx")

#: How long a peer has to accept a connection. Once it has, an answer may take as long as
#: it streams: no other timeout.
CONNECT_S = 5.0
#: A peer's idle kept-alive connection is not reused after this: uvicorn (another corral)
#: and llama-server close theirs after 5 s, and reusing one as it closes would lose the request.
IDLE_S = 4.0


def new_client() -> httpx.AsyncClient:
    """The client every peer request goes through (``proxy.Upstream`` holds it)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=CONNECT_S),
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=None, keepalive_expiry=IDLE_S
        ),
        # A proxy keeps no cookies: one client's must never reach another's request.
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        # The system's CAs (where a peer's private CA is installed), not certifi's bundle;
        # and no HTTP(S)_PROXY or .netrc from the service's environment.
        verify=ssl.create_default_context(),
        trust_env=False,
        follow_redirects=False,  # a redirect is the client's to follow, not corral's
        # The client's own accept-encoding was dropped (``headers``): a peer's answer is
        # relayed as it comes, and compressing it on the way gains nothing.
        headers={"accept-encoding": "identity"},
    )


async def send(
    peers: httpx.AsyncClient,
    method: str,
    url: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    auth: str | None,
) -> PeerAnswer:
    """Send a request to the peer at ``url`` (its base URL); the answer with its status and
    headers in. An ``UpstreamFailed`` says why, for the caller to name the peer."""
    sent = forwarded_raw(headers, auth)
    request = peers.build_request(method, url, headers=sent, content=body or None)
    # The path goes out exactly as the client encoded it (``%2F`` stays): httpx's URL would
    # resolve ``/a/../b`` to ``/b``, and the path is the peer's to read, not corral's.
    request.extensions["target"] = request.url.raw_path.rstrip(b"/") + path.encode()
    try:
        response = await peers.send(request, stream=True)
    except httpx.LocalProtocolError as exc:
        raise BadRequest(f"cannot forward this request to {url}: {exc}") from exc
    except httpx.RemoteProtocolError as exc:
        raise UpstreamFailed(
            f"it broke the connection before answering (it may have crashed): {why(exc)}"
        ) from exc
    except (httpx.HTTPError, OSError) as exc:
        raise UpstreamFailed(f"cannot reach it: {why(exc)}") from exc
    return PeerAnswer(response)


def why(exc: BaseException) -> str:
    """What went wrong under an httpx error: the deepest ``OSError`` beneath it (httpx's "All
    connection attempts failed" hides the refused connection), else httpx's own words."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {CONNECT_S:g} s"
    found = str(exc) or type(exc).__name__
    under: BaseException | None = exc
    while under is not None:
        if isinstance(under, OSError) and str(under):
            found = str(under)
        under = under.__cause__ or under.__context__
    return found


class PeerAnswer:
    """httpx's answer from a peer, read as a ``proxy.Answer``."""

    #: Closes under way (``close``), held here: the loop holds its tasks only weakly.
    closing: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = [(k.lower(), v) for k, v in response.headers.raw]

    def header(self, name: bytes) -> bytes | None:
        return first_value(self.headers, name)

    async def iter_any(self) -> AsyncIterator[bytes]:
        try:
            # Decoded: a peer that compresses although asked not to still reaches the client
            # readable (``headers`` drops its content-encoding).
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.RequestError as exc:
            raise Broken(why(exc)) from exc

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_any()])

    def divert(self, sink: Callable[[bytes], bool]) -> None:
        """httpx reads a peer's body only when asked (``iter_any``): the body keeps coming
        that way, and ``sink`` is never called."""

    def release(self) -> None:
        """Done with the answer: httpx put the connection back when the body ended."""
        self.close()  # then a no-op; before the end the connection cannot be reused

    def close(self) -> None:
        """Done with it early: closing the connection tells the peer (it stops generating).

        httpx closes asynchronously, and this is called where a child's answer closes at
        once: the close runs as a task."""
        if self._response.is_closed:
            return
        task = asyncio.ensure_future(self._aclose())
        PeerAnswer.closing.add(task)
        task.add_done_callback(PeerAnswer.closing.discard)

    async def _aclose(self) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError):  # closed either way
            await self._response.aclose()
