"""Passing one request to a peer, and its answer back as it comes.

Owns what crosses to a peer: the client's request without hop-by-hop headers and without any
credential or cookie the client sent (those were meant for this corral), plus the peer's own
key, so a key never reaches a server it was not written for; and a peer that cannot be reached
as a 502 that names it. The answer is relayed by ``proxy.Relay``, as a child's is: streamed
chunk by chunk, and a client that hangs up closes the connection to the peer, which stops its
generation. It does not decide that a request goes to a peer (``router``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
from starlette.responses import Response
from yarl import URL

from corral.supervisor.errors import UpstreamFailed
from corral.supervisor.http.headers import forwarded_headers
from corral.supervisor.http.peers.table import Peer, Route
from corral.supervisor.http.proxy import PeerAnswer, Relay, Upstream

log = logging.getLogger("corral")


class PeerFailed(UpstreamFailed):
    """A peer could not be reached (or its key read): a 502 that names the peer."""

    def __init__(self, route: Route, why: str) -> None:
        peer = route.peer
        super().__init__(f"model {route.model!r} runs on peer {peer.name!r} ({peer.url}): {why}")


def sent_headers(headers: Mapping[str, str], peer: Peer) -> dict[str, str]:
    """The headers a peer gets: the client's, less what was meant for corral, plus its key."""
    return forwarded_headers(headers, peer.authorization)


async def forward(
    upstream: Upstream,
    route: Route,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Response:
    """Send the request to ``route``'s peer at ``path`` (as the client encoded it, with its
    query) and relay the answer, whatever its status: the peer's own errors pass through."""
    peer = route.peer
    if peer.key_error is not None:
        raise PeerFailed(route, peer.key_error)
    try:
        # encoded=True: the path goes out exactly as the client encoded it.
        answer = await upstream.session().request(
            method,
            URL(peer.url + path, encoded=True),
            headers=sent_headers(headers, peer),
            data=body or None,
            allow_redirects=False,
        )
    except (aiohttp.ClientError, OSError) as exc:
        raise PeerFailed(route, f"cannot reach it: {exc}") from exc
    log.debug("peer request: model %s -> peer %s: %s", route.model, peer.name, answer.status)
    return Relay(PeerAnswer(answer), f"{route.model} (peer {peer.name})", _nothing)


async def _nothing() -> None:
    """A peer's answer holds no lease: nothing to give back when it ends."""
