"""Ollama's JSON shapes, translated to and from llama-server's OpenAI-compatible ones.

Owns the mapping of ``/api/chat``, ``/api/generate`` and ``/api/embed(dings)`` bodies onto
OpenAI bodies (``options`` -> sampling fields, ``format`` -> ``response_format``, images and
tool calls). Answers are built in ``answers``, streams in ``stream``, and model
entries in ``models``. Pure: no I/O; the routes (``routes``) read files, hold
leases and talk to the child.

Load-time options (``num_ctx``, ``num_gpu``, ``num_thread`` ...) are not forwarded: a running
llama-server's context and offload are fixed when it starts, by the model's config entry.
A ``num_ctx`` above that context gets a warning (``context_warning``) that the routes log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from corral.generator import ollama_options
from corral.supervisor.errors import BadRequest

#: What GET /api/version reports: recent enough for clients that check for features.
VERSION = "0.12.0"

#: Options that set how llama-server is started, and Ollama's names that llama-server spells
#: differently: one mapping, the generator's, for requests, the store and Modelfiles.
LOAD_TIME = ollama_options.LOAD_TIME
RENAMED = ollama_options.RENAMED
#: Ollama's ``think`` levels (gpt-oss), sent to llama-server as OpenAI's ``reasoning_effort``.
THINK_LEVELS = ("high", "medium", "low")
#: The first base64 characters of each image format's magic bytes.
_IMAGE_TYPES = {
    "iVBOR": "image/png",
    "/9j/": "image/jpeg",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}


# -- requests -----------------------------------------------------------------------------


def sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` and ``format`` as OpenAI/llama-server request fields."""
    options = body.get("options") or {}
    if not isinstance(options, Mapping):
        raise BadRequest(f"options: must be an object, got {json.dumps(options)}")
    out = ollama_options.to_parameters(options)
    response_format = _format(body.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    return out


def context_warning(body: Mapping[str, Any], model: str, context_size: int) -> str | None:
    """A warning when ``options.num_ctx`` asks for more context than ``model`` runs with:
    the option cannot change a running server, and a longer prompt will be refused."""
    options = body.get("options")
    wanted = options.get("num_ctx") if isinstance(options, Mapping) else None
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted <= context_size:
        return None
    return (
        f"model {model}: options.num_ctx {wanted} is above its context_size {context_size}, "
        f"which is fixed when its server starts; prompts over {context_size} tokens fail. "
        f"Raise context_size in the config to serve more"
    )


def _format(value: object) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, Mapping):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": value}}
    raise BadRequest(f'format: must be "json" or a JSON schema object, got {json.dumps(value)}')


def chat_request(body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """An ``/api/chat`` body as a ``/v1/chat/completions`` body."""
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise BadRequest(f"messages: must be a list, got {json.dumps(messages)}")
    out = {"model": body["model"], "messages": [_message(m, i) for i, m in enumerate(messages)]}
    if body.get("tools"):
        out["tools"] = body["tools"]  # Ollama's tool definitions are OpenAI's
    return _finish_request(out, body, stream)


def generate_request(body: Mapping[str, Any], stream: bool) -> tuple[str, dict[str, Any]]:
    """An ``/api/generate`` body as an upstream path and body.

    ``raw`` prompts go to ``/v1/completions`` untouched; the rest go through the model's
    chat template, as Ollama applies its template, with ``system`` as the system message.
    """
    prompt = body.get("prompt") or ""
    if body.get("suffix"):
        return "/infill", infill_request(body)
    if body.get("raw"):
        return "/v1/completions", _finish_request(
            {"model": body["model"], "prompt": prompt}, body, stream
        )
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    messages.append(_message({"role": "user", "content": prompt, "images": body.get("images")}, 0))
    return "/v1/chat/completions", _finish_request(
        {"model": body["model"], "messages": messages}, body, stream
    )


def infill_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ``suffix`` generate as llama-server's ``/infill`` body: the prompt comes before the
    gap, the suffix after it. Answered whole (llama-server's own answer shape, not OpenAI's:
    see ``answers.infill_answer``)."""
    out = {"model": body["model"], "input_prefix": body.get("prompt") or ""}
    out["input_suffix"] = body["suffix"]
    out.update(sampling(body))
    out.pop("response_format", None)  # /infill takes no schema
    out["stream"] = False
    return out


def _finish_request(out: dict[str, Any], body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    out.update(sampling(body))
    out.update(_think(body.get("think")))
    out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}  # counts and timings at the end
    return out


def _think(think: object) -> dict[str, Any]:
    """Ollama's ``think`` as llama-server's reasoning settings: a bool switches the template's
    thinking on or off; a level also sets ``reasoning_effort``."""
    if think is None:
        return {}
    if isinstance(think, bool):
        return {"chat_template_kwargs": {"enable_thinking": think}}
    if think in THINK_LEVELS:
        return {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": think}
    levels = ", ".join(f'"{level}"' for level in THINK_LEVELS)
    raise BadRequest(f"think: must be true, false, {levels}, got {json.dumps(think)}")


def _message(message: object, index: int) -> dict[str, Any]:
    if not isinstance(message, Mapping) or "role" not in message:
        raise BadRequest(f"messages[{index}]: must be an object with a role, got {message!r}")
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    images = message.get("images") or []
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": out["content"]}]
        for image in images:
            url = f"data:{_image_type(str(image))};base64,{image}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out["content"] = parts
    if message.get("thinking"):
        out["reasoning_content"] = message["thinking"]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            _call(c, f"messages[{index}].tool_calls[{n}]", n)
            for n, c in enumerate(message["tool_calls"])
        ]
    if message.get("tool_name"):
        out["name"] = message["tool_name"]
    return out


def _call(call: object, where: str, n: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise BadRequest(f'{where}: must be {{"function": {{"name", "arguments"}}}}, got {call!r}')
    return {
        "id": f"call_{n}",  # Ollama's calls carry no id; OpenAI's must
        "type": "function",
        "function": {
            "name": function["name"],
            "arguments": json.dumps(function.get("arguments") or {}),
        },
    }


def _image_type(data: str) -> str:
    return next((t for head, t in _IMAGE_TYPES.items() if data.startswith(head)), "image/png")


def embed_inputs(body: Mapping[str, Any], field: str) -> list[str]:
    """The texts of an ``/api/embed`` (``input``) or ``/api/embeddings`` (``prompt``) body."""
    value = body.get(field)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest(f"{field}: must be a string or a list of strings, got {json.dumps(value)}")
