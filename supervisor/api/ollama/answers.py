"""Ollama's answer shapes, built from llama-server's OpenAI-compatible answers.

Owns ``done``, ``done_reason``, token counts and nanosecond durations of whole answers
(chat, generate, load/unload, embed). Pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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


def tool_calls(calls: object, cut: bool = False) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as JSON text) as Ollama's (arguments as an object).

    ``cut``: the answer hit its token limit. llama-server then still reports the call it
    was in the middle of, with the arguments it had (``{``); Ollama's parser emits a call
    only once its arguments are whole JSON, so that call is dropped, as Ollama drops it
    (a client would run the tool with ``{}``).
    """
    out = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            if cut:
                continue
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
            tool_calls(message.get("tool_calls"), cut=choice.get("finish_reason") == "length"),
        ),
        "done": True,
        "done_reason": done_reason(choice.get("finish_reason")),
        **clock.stats(now_ns, answer.get("usage") or {}, answer.get("timings") or {}),
    }


def generate_answer(
    model: str, answer: Mapping[str, Any], clock: Clock, now_ns: int
) -> dict[str, Any]:
    """A whole chat or text completion answer as an ``/api/generate`` answer.

    Without ``context`` (nor does the stream's last line carry it): Ollama deprecated it,
    and llama-server's OpenAI answers carry no token ids. Filling it would cost two more
    requests to the child per answer (the templated prompt through ``/apply-template`` and
    ``/tokenize``, the reply through ``/tokenize``), and llama-server's prompt cache already
    reuses a conversation's prefix: send ``messages`` to ``/api/chat`` instead. A client
    that sends ``context`` back has it ignored.
    """
    out = chat_answer(model, answer, clock, now_ns)
    message = out.pop("message")
    choice = (answer.get("choices") or [{}])[0]
    text = choice["text"] if "text" in choice else message["content"]
    head = {"model": model, "created_at": out.pop("created_at"), "response": text}
    if message.get("thinking"):
        head["thinking"] = message["thinking"]
    return {**head, **out}


def infill_answer(
    model: str, answer: Mapping[str, Any], clock: Clock, now_ns: int
) -> dict[str, Any]:
    """llama-server's own ``/infill`` answer (``content``, ``stop_type``, token counts) as an
    ``/api/generate`` answer."""
    stopped = "length" if answer.get("stop_type") == "limit" else "stop"
    completion = {
        "choices": [{"text": answer.get("content") or "", "finish_reason": stopped}],
        "usage": {
            "prompt_tokens": answer.get("tokens_evaluated") or 0,
            "completion_tokens": answer.get("tokens_predicted") or 0,
        },
        "timings": answer.get("timings") or {},
    }
    return generate_answer(model, completion, clock, now_ns)


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
