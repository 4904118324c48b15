"""A child's server-sent events turned into Ollama's NDJSON objects, as they arrive.

Owns the incremental parse (chunk boundaries, tool-call fragments), the closing ``done``
object, or an ``{"error": ...}`` line when the answer stops short, and NDJSON's encoding.
``Stream`` is pure; ``NDJSONLines`` wraps it as the proxy relay's transform (it reads the clock).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from corral.supervisor.api.ollama.answers import (
    Clock,
    assistant,
    done_reason,
    now_text,
    tool_calls,
)
from corral.supervisor.errors import child_message

MEDIA_TYPE = "application/x-ndjson"


def line(answer: Mapping[str, Any]) -> str:
    """One NDJSON line, written as compactly as Ollama writes it."""
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")) + "\n"


class Stream:
    """A child's server-sent events (chat or text completion chunks), turned into Ollama's
    NDJSON objects as they arrive: one per piece of text, then the ``done`` object with the
    counts and durations that llama-server sends last (``stream_options.include_usage``)."""

    def __init__(self, kind: str, model: str, clock: Clock) -> None:
        self.kind, self.model, self.clock = kind, model, clock
        self.ended = False
        self.failed = False  # the answer ended in an error object, not in ``done``
        self._buffer = b""
        self._finish: object = None
        self._usage: Mapping[str, Any] = {}
        self._timings: Mapping[str, Any] = {}
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, data: bytes, now_ns: int) -> list[dict[str, Any]]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[dict[str, Any]] = []
        for line in lines:
            if not self.ended:
                out += self._line(line.strip(), now_ns)
        return out

    def close(self, now_ns: int) -> list[dict[str, Any]]:
        """The child's answer ended: the last objects, or an error if it stopped short."""
        out = [] if self.ended else self._line(self._buffer.strip(), now_ns)
        if self.ended:
            return out
        self.ended = True
        if self._finish is None:
            return [*out, self._error(f"model {self.model!r}: its server stopped mid-answer")]
        return out + self._done(now_ns)

    def _line(self, line: bytes, now_ns: int) -> list[dict[str, Any]]:
        field, _, payload = line.partition(b":")
        if field == b"error":  # llama-server's failure event
            return [self._error(child_message(500, payload.strip()))]
        if field != b"data":
            return []  # blank lines, comments, `event:` names
        payload = payload.strip()
        if payload == b"[DONE]":
            return self._done(now_ns)
        try:
            event = json.loads(payload)
        except ValueError:
            return []
        if not isinstance(event, dict):
            return []
        if "error" in event:
            return [self._error(child_message(500, payload))]
        self._usage = event.get("usage") or self._usage
        self._timings = event.get("timings") or self._timings
        out = []
        for choice in event.get("choices") or []:
            self._finish = choice.get("finish_reason") or self._finish
            delta = choice.get("delta") or {}
            text = choice["text"] if "text" in choice else delta.get("content")
            for call in delta.get("tool_calls") or []:
                into = self._calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                into["name"] += function.get("name") or ""
                into["arguments"] += function.get("arguments") or ""
            if text or delta.get("reasoning_content"):
                out.append(self._piece(text or "", delta.get("reasoning_content")))
        return out

    def _error(self, message: str) -> dict[str, Any]:
        self.ended = self.failed = True
        return {"error": message}

    def _piece(
        self, text: str, thinking: str | None = None, calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        piece: dict[str, Any] = {"model": self.model, "created_at": now_text()}
        if self.kind == "chat":
            piece["message"] = assistant(text, thinking, calls)
        else:
            piece["response"] = text
            if thinking:
                piece["thinking"] = thinking
        piece["done"] = False
        return piece

    def _done(self, now_ns: int) -> list[dict[str, Any]]:
        self.ended = True
        out = []
        if self._calls and self.kind == "chat":
            calls = [{"function": c} for _, c in sorted(self._calls.items())]
            whole = tool_calls(calls, cut=self._finish == "length")
            if whole:
                out.append(self._piece("", calls=whole))
        last = self._piece("")
        last.update(done=True, done_reason=done_reason(self._finish))
        last.update(self.clock.stats(now_ns, self._usage, self._timings))
        return [*out, last]


class NDJSONLines:
    """A ``Stream`` as the relay's transform (``transform.Transform``): the child's events in,
    Ollama's NDJSON lines out, each sent as soon as it is complete."""

    media_type = MEDIA_TYPE

    def __init__(self, stream: Stream, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.stream = stream
        self._clock = clock

    def feed(self, chunk: bytes) -> bytes:
        return _lines(self.stream.feed(chunk, self._clock()))

    def close(self, broken: bool) -> bytes:
        # After a break the stream has no ``done``: close() reports it as an error object.
        return _lines(self.stream.close(self._clock()))


def _lines(objects: list[dict[str, Any]]) -> bytes:
    return "".join(line(o) for o in objects).encode()
