"""A streaming answer that starts while its model loads: progress first, then the answer.

Owns ``ProgressThenAnswer``, the response of a streaming chat request to a model whose
``send_loading_state`` is on and which is not loaded yet (llama-swap's ``sendLoadingState``):
the stream opens at once, the load's progress goes out in the client's own framing (OpenAI
chunks with ``reasoning_content``, Ollama lines with ``thinking``; see ``Framing``), and the
model's answer follows in the same stream once it is ready. A failure to load becomes the
stream's last event (the status line went out long before). The load and the exchange are
the route's (``answer``); this only relays what happens meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from corral.supervisor.errors import ClientGone, ServeError, error_body
from corral.supervisor.http import direct_body

Follow = Callable[[], AbstractAsyncContextManager["asyncio.Queue[dict[str, Any]]"]]


class Framing(Protocol):
    """How one API frames a progress note and an error in its stream."""

    media_type: str

    def note(self, text: str) -> bytes: ...

    def error(self, status: int, message: str, kind: str) -> bytes: ...

    def wrap(self, body: bytes) -> bytes:
        """A whole non-streamed answer (an error from the model) as one last message."""
        ...


class OpenAIFraming:
    """OpenAI's chat chunks: the note in ``delta.reasoning_content``, as llama-swap does."""

    media_type = "text/event-stream"

    def __init__(self, model: str) -> None:
        self.model = model
        self.created = int(time.time())

    def note(self, text: str) -> bytes:
        chunk = {
            "id": "corral-loading",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def error(self, status: int, message: str, kind: str) -> bytes:
        return f"data: {json.dumps(error_body(status, message, kind))}\n\n".encode()

    def wrap(self, body: bytes) -> bytes:
        return b"data: " + body.strip() + b"\n\n"


class OllamaFraming:
    """Ollama's NDJSON chat lines: the note in ``message.thinking``, not yet ``done``."""

    media_type = "application/x-ndjson"

    def __init__(self, model: str) -> None:
        self.model = model

    def note(self, text: str) -> bytes:
        line = {
            "model": self.model,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "message": {"role": "assistant", "content": "", "thinking": text},
            "done": False,
        }
        return json.dumps(line).encode() + b"\n"

    def error(self, status: int, message: str, kind: str) -> bytes:
        return json.dumps({"error": message}).encode() + b"\n"

    def wrap(self, body: bytes) -> bytes:
        return body.strip() + b"\n"


def progress_text(event: dict[str, Any]) -> str | None:
    """What a client reads of one of the pool's events for its model."""
    kind = event["kind"]
    if kind == "loading":
        return f"Loading model {event['model']}…\n"
    if kind == "progress":
        return f"… {event['seconds']:.0f} s\n"
    if kind == "ready":
        return f"Model {event['model']} ready in {event['seconds']:.1f} s.\n\n"
    return None


class ProgressThenAnswer(Response):
    """See the module docstring. ``answer`` waits for the model and returns its response
    (a relay); ``follow`` gives the pool's events, of which those for ``model`` are shown."""

    def __init__(
        self,
        answer: Callable[[], Awaitable[Response]],
        follow: Follow,
        model: str,
        framing: Framing,
    ) -> None:
        super().__init__(status_code=200, media_type=framing.media_type)
        self._answer = answer
        self._follow = follow
        self._model = model
        self._framing = framing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        framing = self._framing
        headers = [(b"content-type", framing.media_type.encode()), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        answer = asyncio.ensure_future(self._answer())
        try:
            await self._progress(answer, send)
            response = await answer
        except ClientGone:
            return  # nobody to tell; the load went on only if others wait for it
        except ServeError as exc:
            last = framing.error(exc.status, exc.message, exc.kind)
            await send({"type": "http.response.body", "body": last})
            return
        finally:
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(BaseException):
                    await answer
        # ``_joined`` holds an error's body to wrap it: it must see every body message.
        await response(direct_body.without(scope), receive, self._joined(send))

    async def _progress(self, answer: asyncio.Future[Response], send: Send) -> None:
        async with self._follow() as queue:
            note = progress_text({"kind": "loading", "model": self._model})
            assert note is not None
            await send(
                {"type": "http.response.body", "body": self._framing.note(note), "more_body": True}
            )
            while not answer.done():
                got = asyncio.ensure_future(queue.get())
                both: set[asyncio.Future[Any]] = {answer, got}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    continue
                event = got.result()
                text = progress_text(event) if event.get("model") == self._model else None
                if text is not None and event["kind"] != "loading":
                    body = self._framing.note(text)
                    await send({"type": "http.response.body", "body": body, "more_body": True})

    def _joined(self, send: Send) -> Send:
        """``send`` for the answer's own response: its start went out already, and a non-200
        answer's body (an error) becomes the stream's last message."""
        status = 200
        held: list[bytes] = []

        async def joined(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                return
            if status == 200:
                await send(message)
                return
            held.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = self._framing.wrap(b"".join(held))
                await send({"type": "http.response.body", "body": body})

        return joined
