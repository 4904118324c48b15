"""HTTP errors in the OpenAI envelope, and the exceptions that become them.

Owns the shape every error answer takes (``{"error": {"message", "type", "code", "param"}}``)
and the mapping from corral's failures to statuses. It does not decide when they happen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.responses import JSONResponse


class ServeError(Exception):
    """A failure a client is told about: an HTTP status, an OpenAI error type, a message."""

    status = 500
    kind = "server_error"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.kind, headers=self.headers)


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


class StartFailed(ServeError):
    """The model's llama-server did not become ready; carries its last log lines."""

    status = 503
    kind = "model_start_failed"


class UpstreamFailed(ServeError):
    """The child died or broke the connection while answering."""

    status = 502
    kind = "upstream_error"


def error_response(
    status: int, message: str, kind: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status, "param": None}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
