"""Who a browser may be: the Host a request names and the Origin its page sends.

Owns the checks made before anything else (limits, keys, routes), so that a web page can
neither use nor read a corral it was not allowed to:

- **DNS rebinding** (CVE-2024-28224): while corral listens on loopback, a ``Host`` that is
  not a local name is a 403. A page on evil.example that re-points its name at 127.0.0.1
  still sends ``Host: evil.example``. Local names (``LOCAL_NAMES``): ``localhost``,
  ``*.localhost`` and loopback addresses (127.0.0.0/8, ``[::1]``), with any port. A
  request without a Host (an HTTP/1.0 tool; browsers always send one) passes.
- **Cross-site use**: an ``Origin`` that ``allowed_origins`` does not match is a 403 on
  every route, so a page elsewhere cannot even send a "simple" request that acts. An
  ``<img>``, a link or a form GET sends no Origin, but browsers mark it
  ``Sec-Fetch-Site: cross-site``: without an allowed Origin that is a 403 too (20 such
  images used to load 20 models).
- **CORS** for the allowed origins: preflights (OPTIONS with Access-Control-Request-Method)
  are answered here, and answers carry Access-Control-Allow-Origin. No
  ``access-control-*`` header from a child ever leaves: llama-server allows every origin.

Refusals use the route's error shape: ``{"error": "..."}`` under /api/ (Ollama's), the
OpenAI envelope elsewhere. It does not check API keys (``auth``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.generator.access import compile_patterns
from corral.generator.settings import Config, is_loopback
from corral.supervisor.errors import error_response

#: Documentation of the Host check; ``is_local_host`` is its code.
LOCAL_NAMES = ("localhost", "*.localhost", "127.0.0.0/8", "[::1]")

#: Request headers a page may send: the API key, JSON, and what the OpenAI, Anthropic and
#: Ollama JavaScript clients add (both vendors' SDKs send the x-stainless-* family, allowed
#: as a whole; Anthropic's refuses to run in a browser without its "dangerous" header).
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "User-Agent",
    "X-Requested-With",
    "x-api-key",
    "OpenAI-Beta",
    "OpenAI-Organization",
    "OpenAI-Project",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "Idempotency-Key",
)
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#: Seconds a browser may reuse a preflight's answer; Chromium caps it at 7200.
MAX_AGE = "7200"


def is_local_host(host: str) -> bool:
    """Whether a Host header names this machine: a ``LOCAL_NAMES`` name, any port."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    return bool(name) and is_loopback(name)


class BrowserChecks:
    """ASGI middleware: Host and Origin checks, preflights, and CORS headers on answers."""

    def __init__(self, app: ASGIApp, config: Callable[[], Config]) -> None:
        self.app = app
        self.config = config
        self._compiled: tuple[tuple[str, ...], re.Pattern[str]] | None = None

    def allows(self, origin: str, config: Config) -> bool:
        patterns = tuple(config.allowed_origins)
        if self._compiled is None or self._compiled[0] != patterns:
            self._compiled = (patterns, compile_patterns(patterns))
        return self._compiled[1].fullmatch(origin.lower()) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.config()
        hosts = _values(scope, b"host")
        origins = _values(scope, b"origin")
        refusal = None
        if is_loopback(config.host) and not all(is_local_host(h) for h in hosts):
            refusal = (
                f"Host {hosts[-1]!r} is not a local name: corral listens on {config.host}, and "
                "a page on another name may be a DNS-rebinding attack; send Host: localhost"
            )
        elif not all(self.allows(o, config) for o in origins):
            refusal = f"Origin {origins[-1]!r} is not allowed; add it to allowed_origins"
        elif not origins and "cross-site" in _values(scope, b"sec-fetch-site"):
            refusal = (
                "a cross-site request without an Origin (an image, a link) is refused; "
                "pages call corral with fetch() from an origin in allowed_origins"
            )
        if refusal is not None:
            await _refuse(scope, refusal)(scope, receive, send)
            return
        origin = origins[0] if origins else None
        if origin is not None and _is_preflight(scope):
            await _preflight(scope, origin)(scope, receive, send)
            return
        await self.app(scope, receive, _with_cors(send, origin))


def _values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for n, v in scope["headers"] if n == name]


def _is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and bool(_values(scope, b"access-control-request-method"))


def _refuse(scope: Scope, message: str) -> Response:
    return error_response(403, message, "permission_error", path=scope["path"])


def _preflight(scope: Scope, origin: str) -> Response:
    requested = ",".join(_values(scope, b"access-control-request-headers"))
    stainless = [
        h.strip() for h in requested.split(",") if h.strip().lower().startswith("x-stainless-")
    ]
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ", ".join([*ALLOWED_HEADERS, *stainless]),
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin",
        },
    )


def _with_cors(send: Send, origin: str | None) -> Send:
    """``send`` that drops every access-control-* header of the answer (a child's), then
    allows ``origin`` (already checked) to read it."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (n, v)
                for n, v in message.get("headers", [])
                if not n.lower().startswith(b"access-control-")
            ]
            if origin is not None:
                headers += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"vary", b"Origin"),
                ]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
