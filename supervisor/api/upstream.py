"""``/upstream/<model>/<path>``: a model's own llama-server API, passed through.

Owns splitting the path into a model name and the child's path (the longest known name wins,
since names may contain slashes), and which requests may pass: reads and inference always;
anything else changes the child for all of its users (LoRA adapters, slot save and restore,
``/props``), so it needs ``upstream_writes: true``. It forwards through ``Service.exchange``
and starts or stops nothing itself.
"""

from __future__ import annotations

import contextlib
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.generator.settings import Config
from corral.supervisor.errors import Forbidden, UnknownModel
from corral.supervisor.http import scrub
from corral.supervisor.service import Service

#: Methods that read: they change nothing in the child.
READS = frozenset({"GET", "HEAD", "OPTIONS"})

#: llama-server's POST paths that only compute an answer for the one request.
INFERENCE = frozenset(
    {
        *("/completion", "/completions", "/v1/completions"),
        *("/chat/completions", "/v1/chat/completions", "/v1/responses"),
        *("/v1/messages", "/v1/messages/count_tokens", "/infill"),
        *("/embedding", "/embeddings", "/v1/embeddings"),
        *("/rerank", "/reranking", "/v1/rerank", "/v1/reranking"),
        *("/tokenize", "/detokenize", "/apply-template"),
    }
)


def candidates(raw: str, depth: int) -> list[tuple[str, str]]:
    """``(model name, child path)`` splits of the raw path after ``/upstream/``, longest
    name first, names of at most ``depth`` segments.

    A name is decoded (``org%2Fm`` is ``org/m``); the child's path stays as the client
    encoded it, since decoding would put raw spaces, NULs or CR/LF into its request line.
    Bounding the segments by the deepest known name keeps this linear in the path's length:
    trying every split of a path of 30,000 slashes froze the event loop for seconds.
    """
    parts = raw.split("/", depth)  # at most depth name segments, then the rest whole
    names = [unquote(p) for p in parts[:depth]]
    return [
        ("/".join(names[:cut]), "/" + "/".join(parts[cut:])) for cut in range(len(names), 0, -1)
    ]


def depth_of(config: Config) -> int:
    """The most segments a model name or alias has: ``org/model:q4`` has two."""
    names = [name for model in config.models for name in model.names]
    return 1 + max((name.count("/") for name in names), default=0)


def may_pass(method: str, path: str, config: Config) -> bool:
    """Whether a request may reach the child: reads and inference, or everything when the
    config allows writes."""
    return config.upstream_writes or method in READS or path.split("?", 1)[0] in INFERENCE


async def passthrough(request: Request) -> Response:
    """Any method to ``/upstream/<model>/<path>``."""
    svc = Service.of(request)
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    after = raw.decode("ascii", "replace").removeprefix("/").partition("/")[2]
    splits = candidates(after, depth_of(svc.config))
    for name, path in splits:
        with contextlib.suppress(UnknownModel):
            entry = svc.pool.resolve(name)
            if not may_pass(request.method, path, svc.config):
                raise Forbidden(
                    f"{request.method} {path} would change {entry.name!r} for all of its "
                    "users; /upstream/ passes only reads and inference unless "
                    "upstream_writes is true"
                )
            query = request.scope.get("query_string", b"").decode("ascii", "replace")
            if query:
                path += "?" + query
            body = await request.body()
            async with svc.exchange(request, entry.name, size=len(body)) as ex:
                hide = scrub.hiding(entry.config.path)  # /props names the model's path
                return await ex.stream(request.method, path, request.headers, body, hide)
    svc.pool.resolve(splits[-1][0])  # raises the 404 that lists the known names
    raise AssertionError("unreachable")


def routes() -> list[BaseRoute]:
    return [
        Route(
            "/upstream/{rest:path}",
            passthrough,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        ),
    ]
