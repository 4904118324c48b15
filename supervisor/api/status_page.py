"""The status page: ``/ui``, and ``/`` for a browser.

Owns rendering the page (``templates/status.html.j2``, with jinja2): every model as a plain
table that works without JavaScript (an unload button is a form that comes back here), and
a little JavaScript that follows ``/events`` and ``/status`` to keep it current, counts the
TTL down and follows a model's log when its section is opened. No build step and nothing
from elsewhere: the page is one file. ``/`` serves it to a client that asks for HTML and
keeps Ollama's "Ollama is running" for every other (Ollama's clients check it).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from corral.supervisor.api.ollama import info
from corral.supervisor.runtime import views
from corral.supervisor.runtime.events import KINDS
from corral.supervisor.service import Service

if TYPE_CHECKING:
    import jinja2

#: What a cell shows when there is no figure (an en dash).
NONE = "\u2013"
#: Log lines the page shows per model before JavaScript follows the log.
LOG_LINES = 30


def _countdown(model: dict[str, Any], now: float) -> str:
    expires = model["expires_at"]
    if expires is None:
        return NONE
    left = max(0, round(expires - now))
    return f"{left // 60}:{left % 60:02d}"


@functools.cache
def _templates() -> jinja2.Environment:
    """The page's templates, made on the first render: jinja2 is no cost of a start."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        memory=lambda m: f"{m['bytes'] / 2**30:.2f} GiB" if m else NONE,
        seconds=lambda s: NONE if s is None else f"{s:.1f} s",
        rate=lambda r: NONE if r is None else f"{r:.1f}",
        urlencode=lambda s: quote(s, safe=""),
        countdown=_countdown,
    )
    return env


def render(svc: Service) -> str:
    models = views.every_model(svc.pool)
    logs = {}
    for entry in svc.pool.entries.values():
        lines = entry.child.stderr_tail(LOG_LINES) if entry.child is not None else []
        logs[entry.name] = "\n".join(lines)
    return (
        _templates()
        .get_template("status.html.j2")
        .render(
            models=models,
            loaded=sum(1 for m in models if m["state"] in ("loading", "ready")),
            listen=f"{svc.config.host}:{svc.config.port}",
            now=time.time(),
            logs=logs,
            kinds=sorted(KINDS),
        )
    )


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(render(Service.of(request)), headers={"Cache-Control": "no-store"})


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def root(request: Request) -> Response:
    """The page for a browser; Ollama's answer for everyone else."""
    if wants_html(request):
        return await page(request)
    return await info.root(request)


async def unload(request: Request) -> RedirectResponse:
    """The page's form without JavaScript: unload, then back to the page."""
    await Service.of(request).pool.unload(request.path_params["model"], "unload")
    return RedirectResponse("/ui", status_code=303)


def routes() -> list[BaseRoute]:
    return [
        # GET routes answer HEAD too (starlette adds it): clients probe `/` with HEAD.
        Route("/", root, methods=["GET"]),
        Route("/ui", page, methods=["GET"]),
        Route("/ui/unload/{model:path}", unload, methods=["POST"]),
    ]
