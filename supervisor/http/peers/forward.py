"""Passing one request to a peer, and its answer back as it comes.

Owns the one way to a peer (``send``) and what crosses: the client's request without
hop-by-hop headers and without any credential or cookie the client sent (those were meant
for this corral), plus the peer's own key, so a key never reaches a server it was not written
for; and a peer that cannot be reached as a 502 that names it. The answer is relayed by
``proxy.Relay``, as a child's is: streamed chunk by chunk, and a client that hangs up closes
the connection to the peer, which stops its generation. It does not decide that a request
goes to a peer (``router``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.responses import Response

from corral.supervisor.errors import UpstreamFailed
from corral.supervisor.http.peers.table import Route
from corral.supervisor.http.proxy import Answer, Relay, Upstream

log = logging.getLogger("corral")


class PeerFailed(UpstreamFailed):
    """A peer could not be reached (or its key read): a 502 that names the peer."""

    def __init__(self, route: Route, why: str) -> None:
        peer = route.peer
        super().__init__(f"model {route.model!r} runs on peer {peer.name!r} ({peer.url}): {why}")


async def send(
    upstream: Upstream,
    route: Route,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Answer:
    """The one way to a peer (``forward``'s, and Ollama's routes' through
    ``Service.exchange``): the request at ``path`` (as the client encoded it, with its query)
    with the peer's key in place of the client's; its answer's status and headers in."""
    peer = route.peer
    if peer.key_error is not None:
        raise PeerFailed(route, peer.key_error)
    try:
        answer = await upstream.open(method, peer.url, path, headers, body, auth=peer.authorization)
    except UpstreamFailed as exc:
        raise PeerFailed(route, exc.message) from exc
    log.debug("peer request: model %s -> peer %s: %s", route.model, peer.name, answer.status)
    return answer


async def forward(
    upstream: Upstream,
    route: Route,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Response:
    """Send the request to ``route``'s peer and relay the answer, whatever its status: the
    peer's own errors pass through."""
    answer = await send(upstream, route, method, path, headers, body)
    return Relay(answer, f"{route.model} (peer {route.peer.name})", _nothing)


async def _nothing() -> None:
    """A peer's answer holds no lease: nothing to give back when it ends."""
