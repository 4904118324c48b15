"""The peers' models in corral's model lists, each marked with where it runs. Pure.

Owns the entries added to ``/v1/models`` (``owned_by: peer:<name>``, ``peer``), ``/api/tags``
(a ``peer`` field) and ``/running`` (the peer's own running entries for the models served
here, with ``peer``). The lists of configured models need no call to the peer, so they stay
whole while a peer is down; ``/running`` asks each peer (``router``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from corral.supervisor.http.peers.table import PeerTable

#: The GET routes whose answer gains the peers' models.
MERGED = ("/v1/models", "/api/tags", "/running")


def openai_models(table: PeerTable, created: int) -> list[dict[str, Any]]:
    return [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": f"peer:{peer}",
            "peer": peer,
            "aliases": list(aliases),
        }
        for peer, models in table.listed.items()
        for name, aliases in models
    ]


def ollama_tags(table: PeerTable, created: float) -> list[dict[str, Any]]:
    """Entries shaped like Ollama's: what is known without asking the peer (no size, no
    digest of the file, which lives there)."""
    modified = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }
    return [
        {
            "name": name,
            "model": name,
            "modified_at": modified,
            "size": 0,
            "digest": "",
            "details": details,
            "peer": peer,
        }
        for peer, models in table.listed.items()
        for name, _ in models
    ]


def running(table: PeerTable, peer: str, answer: object) -> list[dict[str, Any]]:
    """A peer's ``/running`` answer, cut to the models served here and marked with ``peer``.

    Anything but corral's (and llama-swap's) shape, ``{"running": [{"model": ...}]}``, gives
    nothing: the peer may be another kind of server.
    """
    names = {name for name, _ in table.listed.get(peer, ())}
    entries = answer.get("running") if isinstance(answer, dict) else None
    if not isinstance(entries, list):
        return []
    return [
        {**entry, "peer": peer}
        for entry in entries
        if isinstance(entry, dict) and entry.get("model") in names
    ]


def merge(path: str, answer: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """``answer`` (a list route's own JSON) with ``extra`` appended to its list."""
    key = {"/v1/models": "data", "/api/tags": "models", "/running": "running"}[path]
    items = answer.get(key)
    return {**answer, key: [*(items if isinstance(items, list) else []), *extra]}
