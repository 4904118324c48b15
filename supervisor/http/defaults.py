"""A model's request defaults: ``parameters`` and ``system_prompt``, applied where unset.

Owns the rule that the client always wins: a default fills a field only when the request did
not set it, and the system prompt is added only when the request has no system message. Pure:
it edits a parsed JSON body and says whether anything changed.
"""

from __future__ import annotations

from typing import Any

from corral.generator.model_settings import ModelConfig

#: Endpoints whose bodies carry chat ``messages`` (of those corral routes by ``model``).
CHAT_PATHS = frozenset({"/v1/chat/completions"})
#: Endpoints that generate text (so sampling parameters apply).
GENERATE_PATHS = CHAT_PATHS | frozenset(
    {"/v1/completions", "/completion", "/infill", "/v1/responses", "/v1/messages"}
)


def apply_defaults(body: dict[str, Any], model: ModelConfig, path: str) -> bool:
    """Fill ``body`` from the model's defaults in place; True when something was added."""
    changed = False
    if path in GENERATE_PATHS:
        for key, value in model.parameters.items():
            if key not in body:
                body[key] = value
                changed = True
    if model.system_prompt is None:
        return changed
    if path in CHAT_PATHS:
        messages = body.get("messages")
        if isinstance(messages, list) and not any(
            isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages
        ):
            body["messages"] = [{"role": "system", "content": model.system_prompt}, *messages]
            changed = True
    elif path == "/v1/responses" and "instructions" not in body:
        body["instructions"] = model.system_prompt
        changed = True
    elif path == "/v1/messages" and "system" not in body:  # Anthropic's system prompt
        body["system"] = model.system_prompt
        changed = True
    return changed
