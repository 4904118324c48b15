"""The ``model`` field of an OpenAI-shaped answer, rewritten to the name the client asked for.

llama-server fills ``model`` with its own idea of the model (the GGUF's path, or its
``--alias``), in whole answers and in every stream chunk. A client that asked for
``gemma-3-270m`` must read ``gemma-3-270m`` back: some (Open WebUI, LangChain's callbacks)
key their bookkeeping by it. corral starts each llama-server with ``--alias <its name>``
(``command.alias``), so an answer to a client that asked by that name is right as it comes.

Owns ``ModelField``, a ``transform.Transform`` that rewrites every ``"model": "<text>"`` pair of
an answer (JSON, or SSE's ``data:`` lines) and leaves every other byte alone, and adds the
pair to a Responses object that lacks it: llama-server's ``response.created`` and
``response.in_progress`` events carry ``{"id", "object": "response", "status"}`` only, and
the OpenAI SDK's ``event.response.model`` reads None. Owns ``needed`` too, which says when
that rewrite has anything to do. It does not pick the name (``api.openai`` passes what the
client sent).

Why a byte rewrite, not ``json.loads`` and ``dumps``: a chunk without ``"model"`` passes
with one substring search, and one with it costs one regex substitution. Inside a JSON
string a quote is always escaped (``\\"``), so the unescaped ``"model"`` that the pattern
matches is always a key, never text a model wrote. Chunks are cut at line ends, so a pair
split across two network reads is held until its line is whole (a client cannot use half
a line either).
"""

from __future__ import annotations

import json
import re

#: A ``"model"`` key and its string value: any escape inside the value is skipped whole.
_PAIR = re.compile(rb'"model"\s*:\s*"[^"\\]*(?:\\.[^"\\]*)*"')
_KEY = b'"model"'
#: A Responses object's own marker (quotes inside JSON strings are escaped: always a key).
_RESPONSE = re.compile(rb'"object"\s*:\s*"response"')
_OBJECT = b'"object"'
#: Where llama-server's answers hold a Responses object without ``model`` (see above).
RESPONSES = "/v1/responses"


def needed(path: str, asked: str, answers_as: str | None) -> bool:
    """Whether an answer on ``path`` needs ``ModelField(asked)``, from a child whose answers
    name the model ``answers_as`` (``Entry.answers_as``; None: not known, as for a ``cmd``).

    Skipped, the chunks of a streamed chat pass with no search at all: the child already says
    what the client asked, unless the client asked by an alias or a preset's name.
    """
    return answers_as != asked or path == RESPONSES


class ModelField:
    """Rewrites ``model`` to ``name`` on the way through; the content type stays the child's."""

    media_type: str | None = None

    def __init__(self, name: str) -> None:
        self._name = name
        self._pair = b'"model":' + json.dumps(name).encode()
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._held:
            chunk = self._held + chunk
            self._held = b""
        end = chunk.rfind(b"\n") + 1
        if end < len(chunk):  # an unfinished line: it may hold half a pair
            self._held = chunk[end:]
            chunk = chunk[:end]
        return self._rewrite(chunk)

    def close(self, broken: bool) -> bytes:
        held, self._held = self._held, b""
        return self._rewrite(held)

    def _rewrite(self, data: bytes) -> bytes:
        if _KEY in data:
            data = _PAIR.sub(lambda _: self._pair, data)
        if _OBJECT not in data or _RESPONSE.search(data) is None:
            return data
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if _RESPONSE.search(line) is not None:
                lines[i] = self._named_response(line)
        return b"\n".join(lines)

    def _named_response(self, line: bytes) -> bytes:
        """``line`` (JSON, or an SSE ``data:`` line) with ``model`` in its Responses object
        (the event's ``response``, or the answer itself) where that lacks one. Parsed: only
        the few lines that hold a Responses object come here."""
        sse = line.startswith(b"data:")
        payload = line[len(b"data:") :] if sse else line
        try:
            event = json.loads(payload)
        except ValueError:
            return line
        found = [event, event.get("response")] if isinstance(event, dict) else []
        named = [o for o in found if isinstance(o, dict) and o.get("object") == "response"]
        if all("model" in o for o in named):
            return line
        for response in named:
            response.setdefault("model", self._name)
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        return (b"data: " if sse else b"") + text
