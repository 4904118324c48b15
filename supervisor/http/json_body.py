"""A request body read as one JSON object, or a 400 that says why it is not one.

Owns the parsing every JSON route shares (OpenAI, Ollama, admin); it does not route.
"""

from __future__ import annotations

import json
from typing import Any

from corral.supervisor.errors import BadRequest


def read_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to read") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload
