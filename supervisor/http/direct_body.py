"""A streamed answer's body written straight to the client's socket: the hot path's one lane.

Each token a child streams used to cross, in Python: the child's socket callback, a future,
the relay task's wake-up, an async generator, five ASGI ``send`` wrappers (starlette's two,
the route's, ``origins``' CORS one, the relay's own) and uvicorn's ``send``: about 430 µs of
CPU per token on this machine, where a relay that writes from the socket callback pays about
100 (``bench/PROFILE.md``). ``DirectBody`` is that write: the server's protocol
(``connections``) puts one in every request's scope under ``KEY``, and ``proxy.Relay`` hands
its ``write`` to the child's connection (``client.Answer.divert``), which calls it from the
child's socket callback, with the relay's transform applied, while the client keeps up.

What still goes through ``send``: the answer's start (so every middleware sees its status
and headers), the last body message (uvicorn ends the chunked body and keeps the connection
alive), and whatever the client was too slow to take at once (``send`` waits for the
socket to drain). The lane is used only where uvicorn would frame the body in chunks
itself, so the bytes on the wire are the same.

The rule for a middleware or response that needs the body messages (to hold, count or
rewrite them): it passes ``without(scope)`` on, and the relay under it uses ``send`` only.
corral's own middlewares look at the start alone (``app.BODY_BLIND``). It does not decide
what is relayed (``proxy``) or parse anything (``client``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.types import Scope

#: The scope's ``extensions`` key whose dict (ASGI wants one) holds the request's lane.
KEY = "corral.direct_body"


class _Flow(Protocol):
    @property
    def write_paused(self) -> bool: ...


class Cycle(Protocol):
    """What the lane reads of uvicorn's ``RequestResponseCycle``."""

    @property
    def transport(self) -> asyncio.Transport: ...

    @property
    def flow(self) -> _Flow: ...

    @property
    def disconnected(self) -> bool: ...

    @property
    def response_started(self) -> bool: ...

    @property
    def response_complete(self) -> bool: ...

    @property
    def chunked_encoding(self) -> bool | None: ...


class DirectBody:
    """One request's lane to its client's socket (see the module docstring)."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: Cycle) -> None:
        self._cycle = cycle
        self._transport = cycle.transport

    def ready(self) -> bool:
        """The answer has started, uvicorn frames its body in chunks (not a HEAD, no
        content-length) and has not ended it: the lane may carry its body."""
        cycle = self._cycle
        return (
            cycle.response_started
            and bool(cycle.chunked_encoding)
            and not cycle.response_complete
            and not cycle.disconnected
        )

    def writable(self) -> bool:
        """False while the client's socket is full or gone: then ``send``, which waits for
        it, carries the body."""
        cycle = self._cycle
        return not cycle.flow.write_paused and not cycle.disconnected

    def write(self, body: bytes) -> None:
        """Write ``body`` (not empty) as one chunk, as uvicorn's ``send`` would."""
        self._transport.write(b"%x\r\n%s\r\n" % (len(body), body))


def offer(cycle: Cycle) -> dict[object, object]:
    """The extension's value for a request that ``cycle`` answers."""
    return {"lane": DirectBody(cycle)}


def lane(scope: Scope) -> DirectBody | None:
    """The request's lane, if the server offers one and nothing above needs the body."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    found = extensions.get(KEY)
    return found.get("lane") if found is not None else None


def without(scope: Scope) -> Scope:
    """``scope`` with no lane: for whoever needs to see every body message it passes on."""
    extensions = scope.get("extensions")
    if not extensions or KEY not in extensions:
        return scope
    return {**scope, "extensions": {k: v for k, v in extensions.items() if k != KEY}}
