"""Ollama's JSON shapes, translated to and from llama-server's OpenAI-compatible ones.

Owns the mapping of ``/api/chat``, ``/api/generate`` and ``/api/embed(dings)`` bodies onto
OpenAI bodies (``options`` -> sampling fields, ``format`` -> ``response_format``, images and
tool calls), of answers back (``done``, ``done_reason``, counts and nanosecond durations),
of a server-sent-event stream onto Ollama's NDJSON objects, and the model entries of
``/api/tags``, ``/api/ps`` and ``/api/show``. Pure: no I/O; the routes (``routes_ollama``)
read files, hold leases and talk to the child, and hand the facts in.

Load-time options (``num_ctx``, ``num_gpu``, ``num_thread`` ...) are not forwarded: a running
llama-server's context and offload are fixed when it starts, by the model's config entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corral.generator.settings import ModelConfig
from corral.supervisor.errors import BadRequest

#: What GET /api/version reports: recent enough for clients that check for features.
VERSION = "0.12.0"
#: Go's largest Duration in seconds: Ollama's expiry for a model kept loaded for good, which
#: clients (the ollama CLI among them) recognise and show as "Forever".
FOREVER_S = (2**63 - 1) / 1e9

#: Options that set how llama-server is started; a request cannot change them.
LOAD_TIME = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all"}
    | {"vocab_only", "use_mmap", "use_mlock", "numa", "num_thread", "embedding_only"}
)
#: Ollama option names that llama-server spells differently; the rest pass through as they are.
RENAMED = {"num_predict": "max_tokens", "num_keep": "n_keep"}
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
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in LOAD_TIME or value is None:
            continue
        if key == "num_predict" and isinstance(value, int | float) and value < 0:
            continue  # -1 (no limit) and -2 (fill the context) are llama-server's default
        name = str(key)
        out[RENAMED.get(name, name)] = value
    response_format = _format(body.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    return out


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
    if body.get("suffix"):
        raise BadRequest("suffix: fill-in-the-middle is not translated; use POST /infill")
    prompt = body.get("prompt") or ""
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


def _finish_request(out: dict[str, Any], body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    out.update(sampling(body))
    think = body.get("think")
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}  # counts and timings at the end
    return out


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


# -- answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """Nanosecond figures the routes measure: when the request arrived, when its model was
    ready (load_duration), and now (for total_duration)."""

    arrived_ns: int
    ready_ns: int

    def stats(
        self, now_ns: int, usage: Mapping[str, Any], timings: Mapping[str, Any]
    ) -> dict[str, int]:
        return {
            "total_duration": now_ns - self.arrived_ns,
            "load_duration": self.ready_ns - self.arrived_ns,
            "prompt_eval_count": int(usage.get("prompt_tokens") or timings.get("prompt_n") or 0),
            "prompt_eval_duration": int(float(timings.get("prompt_ms") or 0) * 1e6),
            "eval_count": int(usage.get("completion_tokens") or timings.get("predicted_n") or 0),
            "eval_duration": int(float(timings.get("predicted_ms") or 0) * 1e6),
        }


def now_text(epoch: float | None = None) -> str:
    """RFC 3339 in UTC, the way Ollama's ``created_at`` and ``expires_at`` read."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def done_reason(finish_reason: object) -> str:
    # Ollama reports a tool call as an ordinary stop.
    return "length" if finish_reason == "length" else "stop"


def assistant(
    content: str, thinking: str | None = None, calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return message


def tool_calls(calls: object) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as JSON text) as Ollama's (arguments as an object)."""
    out = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}  # a model's malformed arguments: Ollama's clients need an object
        out.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return out


def chat_answer(model: str, answer: Mapping[str, Any], clock: Clock, now_ns: int) -> dict[str, Any]:
    """A whole ``/v1/chat/completions`` answer as an ``/api/chat`` (or generate) answer."""
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return {
        "model": model,
        "created_at": now_text(),
        "message": assistant(
            message.get("content") or "",
            message.get("reasoning_content"),
            tool_calls(message.get("tool_calls")),
        ),
        "done": True,
        "done_reason": done_reason(choice.get("finish_reason")),
        **clock.stats(now_ns, answer.get("usage") or {}, answer.get("timings") or {}),
    }


def generate_answer(
    model: str, answer: Mapping[str, Any], clock: Clock, now_ns: int
) -> dict[str, Any]:
    """A whole chat or text completion answer as an ``/api/generate`` answer."""
    out = chat_answer(model, answer, clock, now_ns)
    message = out.pop("message")
    choice = (answer.get("choices") or [{}])[0]
    text = choice["text"] if "text" in choice else message["content"]
    head = {"model": model, "created_at": out.pop("created_at"), "response": text}
    if message.get("thinking"):
        head["thinking"] = message["thinking"]
    return {**head, **out}


def load_answer(kind: str, model: str, reason: str) -> dict[str, Any]:
    """The answer to a request with nothing to generate: ``done_reason`` load or unload."""
    body: dict[str, Any] = {"model": model, "created_at": now_text()}
    if kind == "chat":
        body["message"] = assistant("")
    else:
        body["response"] = ""
    return {**body, "done": True, "done_reason": reason}


def embed_answer(
    model: str, answer: Mapping[str, Any], dimensions: int | None, clock: Clock, now_ns: int
) -> dict[str, Any]:
    """A ``/v1/embeddings`` answer as an ``/api/embed`` answer (vectors of unit length)."""
    data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
    vectors = [_truncated(d["embedding"], dimensions) for d in data]
    stats = clock.stats(now_ns, answer.get("usage") or {}, {})
    keep = ("total_duration", "load_duration", "prompt_eval_count")
    return {"model": model, "embeddings": vectors, **{k: stats[k] for k in keep}}


def _truncated(vector: list[float], dimensions: int | None) -> list[float]:
    if not dimensions or dimensions >= len(vector):
        return vector
    cut = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in cut)) or 1.0
    return [x / norm for x in cut]  # Ollama normalises again after cutting


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
            return [self._error(upstream_error(500, payload.strip()))]
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
            return [self._error(upstream_error(500, payload))]
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
            out.append(self._piece("", calls=tool_calls(calls)))
        last = self._piece("")
        last.update(done=True, done_reason=done_reason(self._finish))
        last.update(self.clock.stats(now_ns, self._usage, self._timings))
        return [*out, last]


def upstream_error(status: int, content: bytes) -> str:
    """The message in a child's error answer (OpenAI envelope or plain text)."""
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if payload.get("message"):  # llama-server's `error:` stream event: the bare object
            return str(payload["message"])
    text = content.decode("utf-8", "replace").strip()
    return text or f"the model's server answered {status} with no message"


# -- model entries ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFacts:
    """What the routes read from a model's file: its size and modification time."""

    size: int
    mtime: float


_QUANT = re.compile(r"(?i)(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|f16|bf16|f32)(?![a-z0-9])")


def details(model: ModelConfig) -> dict[str, Any]:
    stem = model.path.name if model.path is not None else model.name
    quant = _QUANT.findall(stem)
    return {
        "parent_model": model.from_ or "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": quant[-1].upper() if quant else "",
    }


def digest(model: ModelConfig, facts: FileFacts) -> str:
    """A stable stand-in for Ollama's manifest digest: it changes when the file does.

    Hashing the file itself would read gigabytes on every model list.
    """
    key = f"{model.path}\0{facts.size}\0{facts.mtime}"
    return hashlib.sha256(key.encode()).hexdigest()


def tag_entry(model: ModelConfig, facts: FileFacts) -> dict[str, Any]:
    """One model in ``/api/tags``."""
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": now_text(facts.mtime),
        "size": facts.size,
        "digest": digest(model, facts),
        "details": details(model),
    }


def ps_entry(
    model: ModelConfig, facts: FileFacts, expires_at: float | None, now: float
) -> dict[str, Any]:
    """One running model in ``/api/ps``; ``expires_at`` None means it never unloads.

    ``size_vram`` is the file size unless no layer is offloaded (an estimate: the KV cache
    is not counted).
    """
    entry = tag_entry(model, facts)
    del entry["modified_at"]
    entry["expires_at"] = now_text(now + FOREVER_S if expires_at is None else expires_at)
    entry["size_vram"] = 0 if model.gpu_layers == 0 else facts.size
    entry["context_length"] = model.context_size
    return entry


def show_answer(model: ModelConfig, facts: FileFacts) -> dict[str, Any]:
    """``/api/show``: the entry rendered as a Modelfile, its parameters and details."""
    parameters = "\n".join(f"{k} {json.dumps(v)}" for k, v in model.parameters.items())
    lines = [f"FROM {model.path or model.name}"]
    lines += [f"PARAMETER {line}" for line in parameters.splitlines()]
    if model.system_prompt:
        lines.append(f'SYSTEM """{model.system_prompt}"""')
    capabilities = ["completion"]
    if any(a in ("--embeddings", "--embedding") for a in model.args):
        capabilities.append("embedding")
    return {
        "modelfile": "\n".join(lines) + "\n",
        "parameters": parameters,
        "template": model.chat_template or "",
        "system": model.system_prompt or "",
        "details": details(model),
        "model_info": {},  # the GGUF header is not read (yet): no architecture to report
        "capabilities": capabilities,
        "modified_at": now_text(facts.mtime),
    }
