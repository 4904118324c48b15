"""HTTP errors in the shape each API's clients read, and the exceptions that become them.

Owns the shape every error answer takes: OpenAI's envelope (``{"error": {"message", "type",
"code", "param"}}``) everywhere, except on Ollama's paths (``/`` and ``/api/...``), whose
clients read ``{"error": "<text>"}`` and show anything else as ``[object Object]``, and on
Anthropic's (``/v1/messages...``), whose SDKs read ``{"type": "error", "error": {"type",
"message"}}``. Owns the mapping from corral's failures to statuses too, and the message of
a child's own error answer. It does not decide when they happen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.responses import JSONResponse


class ServeError(Exception):
    """A failure a client is told about: an HTTP status, an OpenAI error type, a message."""

    status = 500
    kind = "server_error"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def response(self, path: str = "") -> JSONResponse:
        """The answer to a request for ``path`` (which picks the shape)."""
        return error_response(self.status, self.message, self.kind, self.headers, path)


class BadRequest(ServeError):
    status = 400
    kind = "invalid_request_error"


class RequestTimeout(ServeError):
    status = 408
    kind = "invalid_request_error"


class PayloadTooLarge(ServeError):
    status = 413
    kind = "invalid_request_error"


class Unauthorized(ServeError):
    status = 401
    kind = "authentication_error"


class Forbidden(ServeError):
    status = 403
    kind = "permission_error"


class UnknownModel(ServeError):
    status = 404
    kind = "model_not_found"

    def __init__(self, name: object, known: Iterable[str]) -> None:
        names = sorted(known)
        listing = ", ".join(names) if names else "(none configured)"
        super().__init__(f"model {name!r} not found; available models: {listing}")
        self.name = name


class Overloaded(ServeError):
    """The model's queue is full; the client should retry later."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, model: str, queued: int, retry_after: int = 1) -> None:
        super().__init__(
            f"model {model!r} has {queued} requests queued (its max_queue); retry later",
            headers={"Retry-After": str(retry_after)},
        )


class QueueBytesFull(ServeError):
    """Requests waiting for models hold ``max_queued_bytes`` of bodies already."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, limit: int, retry_after: int = 1) -> None:
        super().__init__(
            f"requests waiting for models hold {limit} bytes of bodies (max_queued_bytes); "
            "retry later",
            headers={"Retry-After": str(retry_after)},
        )


class BodiesFull(ServeError):
    """Bodies being received hold ``max_receiving_bytes`` already."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class StartFailed(ServeError):
    """The model's llama-server did not become ready; carries its last log lines."""

    status = 503
    kind = "model_start_failed"


class ClientGone(ServeError):
    """The client hung up before its answer began; nobody reads this answer."""

    status = 499  # nginx's "client closed request"
    kind = "client_closed_request"

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r}: the client hung up before the answer")


class UpstreamFailed(ServeError):
    """The child died or broke the connection while answering."""

    status = 502
    kind = "upstream_error"


class UpstreamTimeout(ServeError):
    """The child sent nothing for ``upstream_timeout`` seconds."""

    status = 504
    kind = "upstream_timeout"


class ChildError(ServeError):
    """The child answered with an error status: relayed with its status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def child_message(status: int, content: bytes) -> str:
    """The message in a child's error answer (OpenAI envelope or plain text)."""
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if payload.get("message"):  # llama-server's `error:` stream event: the bare object
            return str(payload["message"])
    text = content.decode("utf-8", "replace").strip()
    return text or f"the model's server answered {status} with no message"


#: Anthropic's error types by status (its API reference, "Errors"); others by class.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def speaks_ollama(path: str) -> bool:
    """Whether ``path`` is one of Ollama's (``/``, ``/api/...``), whose clients read errors as
    a plain string."""
    return path == "/" or path == "/api" or path.startswith("/api/")


def speaks_anthropic(path: str) -> bool:
    """Whether ``path`` is Anthropic's Messages API, whose SDKs read ``error.type``."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_type(status: int) -> str:
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    return ANTHROPIC_TYPES.get(status, fallback)


def error_body(status: int, message: str, kind: str, path: str = "") -> dict[str, Any]:
    """The error body for a request to ``path``: Ollama's shape on its paths, Anthropic's on
    its, else OpenAI's. Also used for the few answers written below ASGI
    (``http/connections``)."""
    if speaks_ollama(path):
        return {"error": message}
    if speaks_anthropic(path):
        return {"type": "error", "error": {"type": anthropic_type(status), "message": message}}
    return {"error": {"message": message, "type": kind, "code": status, "param": None}}


def error_response(
    status: int,
    message: str,
    kind: str,
    headers: Mapping[str, str] | None = None,
    path: str = "",
) -> JSONResponse:
    """An error answer for a request to ``path``, in the shape its clients read."""
    return JSONResponse(
        error_body(status, message, kind, path), status_code=status, headers=dict(headers or {})
    )
