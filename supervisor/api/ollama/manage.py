"""Ollama's model-management routes: ``/api/pull``, and the ones corral answers with a no.

Owns ``/api/pull`` (Ollama's ``PullHandler``: NDJSON ``ProgressResponse`` lines, ``status``
with ``digest``/``total``/``completed`` while a file downloads, ``success`` last, or one
``{"error": ...}`` line; ``"stream": false`` answers the last line alone) and the refusals of
``/api/delete``, ``/api/copy``, ``/api/create`` and ``/api/push``, each saying what corral
does instead. The pulling is ``pull.library``'s, run in a thread; downloads at run time need
``auto_pull: true`` (a declared NixOS setup does not change at run time).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from corral.generator import model_source
from corral.generator.settings import Config
from corral.supervisor.errors import BadRequest
from corral.supervisor.http import lazy
from corral.supervisor.http.json_body import read_json
from corral.supervisor.service import Service

if TYPE_CHECKING:
    from corral.supervisor.pull import library, progress
else:
    # /api/pull only: the downloaders (httpx) are not a start's cost.
    library = lazy.module("corral.supervisor.pull.library")
    progress = lazy.module("corral.supervisor.pull.progress")

#: What each refused route says, in Ollama's error shape.
INSTEAD = {
    "/api/delete": "corral does not delete models: remove the model from the config (or its "
    "file from models_path) and reload (SIGHUP, or nixos-rebuild switch); corral never "
    "changes Ollama's store (ollama_models): remove a model of it with `ollama rm`",
    "/api/copy": "corral does not copy models: give the model another name with `aliases`, "
    "or a preset with `from:` in the config; Ollama's store is copied in with `ollama cp`",
    "/api/create": "corral does not create models from a Modelfile: declare a preset in the "
    "config (`from:` with `parameters`, `system_prompt`, `chat_template`)",
    "/api/push": "corral does not push models; it serves local GGUF files",
}
NO_DOWNLOADS = (
    "downloads at run time are off: set `auto_pull: true` in the config, or run "
    "`corral pull {name}` (on NixOS, declare models.<name>.source with a lock file)"
)
# A progress line per percent is plenty for a bar; more would only flood the client.
_EVERY_S = 0.25

Event = dict[str, Any]


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def refuse(request: Request) -> Response:
    return _error(400, INSTEAD[request.url.path])


async def pull(request: Request) -> Response:
    try:
        body = read_json(await request.body())
    except BadRequest as exc:
        return _error(400, exc.message)
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        return _error(400, "missing `model`: the name or source to pull")
    service = Service.of(request)
    config = service.config
    model = config.model(name)
    if model is not None and (model.cmd is not None or (model.path and model.path.exists())):
        job = _present()
    elif not config.auto_pull:
        return _error(403, NO_DOWNLOADS.format(name=name))
    elif model is not None and model.source is None:
        return _error(
            404, f"model {name!r}: its file {model.path} is missing, and it has no `source`"
        )
    else:
        if model is None:
            try:
                model_source.parse(name)  # a source that is no source is the client's error
            except model_source.SourceSyntaxError as exc:
                return _error(400, str(exc))
        folder = _folder(config, model.path if model else None)
        if folder is None:
            return _error(400, "no models_path in the config: nowhere to save the download")
        job = _pulling(service, name, folder)
    if body.get("stream") is False:
        last: Event = {}
        async for event in job:
            if "error" in event:
                return _error(500, event["error"])
            last = event
        return JSONResponse(last)
    return StreamingResponse(_ndjson(job), media_type="application/x-ndjson")


async def _present() -> AsyncIterator[Event]:
    yield {"status": "success"}


async def _pulling(service: Service, name: str, folder: Path) -> AsyncIterator[Event]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event | None] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    def work() -> None:
        try:
            model = service.config.model(name)
            if model is not None:
                library.ensure_present(model, make_progress=_reporter(emit))
            else:
                plan = library.resolve(name)
                library.fetch(plan, folder, make_progress=_reporter(emit))
            emit({"status": "verifying sha256 digest"})
        except library.ERRORS as exc:
            emit({"error": str(exc)})
        finally:
            loop.call_soon_threadsafe(events.put_nowait, None)

    yield {"status": "pulling manifest"}
    # The download goes on if the client leaves: the next pull finds the file (or its .part).
    task = loop.run_in_executor(None, work)
    failed = False
    while (event := await events.get()) is not None:
        failed = failed or "error" in event
        yield event
    await task
    if not failed:
        # Discovery (and a source model's path) is read at load: the new file is served now.
        await service.reload()
        yield {"status": "success"}


def _reporter(
    emit: Callable[[Event], None],
) -> Callable[[library.RemoteFile], progress.ProgressFactory]:
    def for_file(remote: library.RemoteFile) -> progress.ProgressFactory:
        def factory(filename: str, total: int | None, initial: int) -> progress.Progress:
            return _Report(remote, total, initial, emit)

        return factory

    return for_file


class _Report:
    """One file's progress as Ollama's ``pulling <digest>`` lines."""

    def __init__(
        self,
        remote: library.RemoteFile,
        total: int | None,
        done: int,
        emit: Callable[[Event], None],
    ) -> None:
        digest = remote.sha256 or remote.name
        self.event: Event = {"status": f"pulling {digest[:12]}"}
        if remote.sha256:
            self.event["digest"] = f"sha256:{remote.sha256}"
        self.total = total or remote.size or 0
        self.done = done
        self.emit = emit
        self.last = 0.0
        self._send()

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last >= _EVERY_S:
            self._send()

    def close(self) -> None:
        self._send()

    def _send(self) -> None:
        self.last = time.monotonic()
        self.emit({**self.event, "total": self.total, "completed": self.done})


def _folder(config: Config, path: Path | None) -> Path | None:
    if path is not None:
        return path.parent
    return config.models_path


async def _ndjson(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    async for event in events:
        yield (json.dumps(event) + "\n").encode()


def routes() -> list[BaseRoute]:
    return [
        Route("/api/pull", pull, methods=["POST"]),
        Route("/api/delete", refuse, methods=["DELETE"]),
        Route("/api/copy", refuse, methods=["POST"]),
        Route("/api/create", refuse, methods=["POST"]),
        Route("/api/push", refuse, methods=["POST"]),
    ]
