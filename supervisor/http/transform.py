"""The hook that rewrites an answer on its way to the client, and a chain of such hooks.

Owns the ``Transform`` protocol (what a rewrite of a child's answer must offer) and
``Chain``/``chain``, which apply several in turn. It rewrites nothing itself: the
transforms are ``api.ollama.stream``'s NDJSON, ``model_field``, ``scrub`` and ``timings``;
the relay that feeds them is ``proxy``'s.
"""

from __future__ import annotations

from typing import Protocol


class Transform(Protocol):
    """Rewrites a child's answer on its way to the client, whole or chunk by chunk.

    ``feed`` gets each piece as it arrives and returns what to send now (``b""``: nothing
    yet); ``close`` returns the last bytes, ``broken`` when the child stopped mid-answer.
    ``media_type``: the answer's new content type, or None when the child's stays. Without a
    transform the bytes pass through untouched, so a route pays for a rewrite only when it
    asks for one.
    """

    @property
    def media_type(self) -> str | None: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self, broken: bool) -> bytes: ...


class Chain:
    """Transforms applied in turn, each to what the one before it sends; the content type is
    the last one's that sets it."""

    def __init__(self, transforms: list[Transform]) -> None:
        self._transforms = transforms
        types = [t.media_type for t in transforms if t.media_type is not None]
        self.media_type: str | None = types[-1] if types else None

    def feed(self, chunk: bytes) -> bytes:
        for transform in self._transforms:
            chunk = transform.feed(chunk) if chunk else chunk
        return chunk

    def close(self, broken: bool) -> bytes:
        data = b""
        for transform in self._transforms:
            data = (transform.feed(data) if data else b"") + transform.close(broken)
        return data


def chain(*transforms: Transform | None) -> Transform | None:
    """One transform for several (None ones left out); None when none is left."""
    kept = [t for t in transforms if t is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else Chain(kept)
