"""Which headers cross to a child or a peer, and which of their answer's come back; the
request head written to a child.

Owns the drop lists (hop-by-hop headers, corral's own credentials and cookies) and the
filters over them, on the raw header pairs where it can (no dict per request), and the
request line and headers that ``client`` sends (a line break that would smuggle a second
request is refused there). It sends
nothing (``proxy`` does) and decides no credential (``proxy.Upstream`` passes the child's
key, ``peers.forward`` the peer's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Hop-by-hop headers (RFC 9110 7.6.1), those the client library sets itself, and credentials
# and cookies meant for corral, which a child or a peer has no business seeing. expect: corral
# has the whole body before it asks, so a child has nothing to say 100 Continue to.
_DROP_REQUEST = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-authorization",
        "authorization",
        "x-api-key",
        "cookie",
        "accept-encoding",
        "expect",
    }
)
_DROP_REQUEST_RAW = frozenset(name.encode() for name in _DROP_REQUEST)
# date: uvicorn sets its own, and relaying the child's too would send it twice. (uvicorn
# sends no Server header of its own: see server.py.)
_DROP_RESPONSE = frozenset(
    {
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-encoding",
        b"date",
    }
)


def forwarded_raw(headers: Mapping[str, str], auth: str | None) -> list[tuple[bytes, bytes]]:
    """The client's headers less this hop's and corral's own, as the client sent them (bytes,
    names in lower case: starlette's ``Headers`` keeps the raw pairs, no dict is built);
    ``auth``: the ``Authorization`` the other end expects (a child's key, a peer's)."""
    raw: list[tuple[bytes, bytes]] | None = getattr(headers, "raw", None)
    if raw is None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    sent = [(k, v) for k, v in raw if k not in _DROP_REQUEST_RAW]
    if auth is not None:
        sent.append((b"authorization", auth.encode("latin-1")))
    return sent


def first_value(pairs: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` (lower case) among an answer's pairs (names in lower
    case), or None: ``Answer.header`` of a child's answer and of a peer's."""
    for key, value in pairs:
        if key == name:
            return value
    return None


def answer_headers(pairs: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An answer's headers less this hop's and those uvicorn sets itself."""
    return [(k, v) for k, v in pairs if k not in _DROP_RESPONSE]


#: Requests that carry no body unless they have one (no ``content-length: 0`` sent).
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_head(
    method: str, path: str, port: int, headers: Iterable[tuple[bytes, bytes]], length: int
) -> bytes:
    """The request line and headers; ``headers`` already filtered, names in lower case.

    A CR or LF that reached a path or a value would end the line early and smuggle a second
    request to the child: such a request is refused (``ValueError``).
    """
    lines = [f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode("latin-1")]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    if length or method not in BODILESS:
        lines.append(b"content-length: %d\r\n" % length)
    lines.append(b"\r\n")
    head = b"".join(lines)
    breaks = len(lines) + 1
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks or " " in path:
        raise ValueError("a line break or space in the request's path or headers")
    return head
