"""``corral check --probe``: each model started, and its chat template tested against it.

Owns the self-test of one model's template, run against its real child: a fixed
conversation rendered by llama-server (``/apply-template``), with a tool turn where the
template formats tools; that rendering compared with the template corral expects (the
GGUF's, a file, corral's Jinja for a built-in name) rendered by jinja2, or, for a built-in
run without Jinja, with that name's known markers; the turn markers checked to be special
tokens of the model's vocabulary (``/tokenize`` with ``with_pieces``: one token each, not
text split into pieces); and one short greedy answer, which should end its turn. It prints
one line per model; markers that fail are the only failure (a base model never ends its
turn, even with its right template: that is a warning).

The generator's ``check`` calls it through a hook (``PROBE``), as it calls ``fit``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config
from corral.supervisor.runtime.child import chat_templates
from corral.supervisor.runtime.child.launch import Launcher
from corral.supervisor.runtime.child.states import StartError
from corral.supervisor.runtime.memory import gguf_info

#: Tokens the greedy answer may take to end its turn.
ANSWER_TOKENS = 48
#: The conversation every template renders: system, user, assistant, user.
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hello. How can I help?"},
    {"role": "user", "content": "What is the capital of France?"},
]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city now",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
#: The tool turn, after the conversation, for a template that formats tools.
TOOL_TURN: list[dict[str, Any]] = [
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
]
#: llama.cpp's built-in names corral runs without Jinja, and the markers each one writes.
KNOWN_MARKERS = {
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "gemma": ["<start_of_turn>", "<end_of_turn>"],
    "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "phi3": ["<|user|>", "<|assistant|>", "<|end|>"],
    "deepseek3": ["<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"],  # fullwidth bars
}
#: A marker: ``<|im_start|>``, ``<start_of_turn>``, DeepSeek's fullwidth bars; no spaces.
_MARKER = re.compile("<[|\uff5c]?[A-Za-z_][^\\s<>]{0,40}?[|\uff5c]?>")


@dataclass
class Report:
    """One model's probe: what its line says, and its warnings."""

    name: str
    source: str = ""
    tools: bool = False
    rendered: str = "not compared"
    markers: dict[str, int] = field(default_factory=dict)  # marker -> tokens it became
    stops: bool | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def markers_ok(self) -> bool:
        return self.error is None and all(n == 1 for n in self.markers.values())

    def line(self) -> str:
        if self.error is not None:
            return f"  {self.name}: not probed: {self.error}"
        split = [f"{m} is {n} tokens" for m, n in self.markers.items() if n != 1]
        markers = "ok" if not split else "FAIL (" + "; ".join(split) + ")"
        stops = "yes" if self.stops else "no"
        return (
            f"  {self.name}: template {self.source}; tools {'yes' if self.tools else 'no'}; "
            f"rendered {self.rendered}; markers {markers}; stops {stops}"
        )


def probe_check(config: Config, only: str | None) -> tuple[list[str], bool]:
    """Lines to print (one per model, then warnings), and whether every model's markers
    passed. ``only``: a model's name or alias; every llama-server model otherwise."""
    models = [m for m in config.models if m.cmd is None]
    if only is not None:
        chosen = config.model(only)
        if chosen is None:
            names = ", ".join(m.name for m in config.models)
            return [f"error: --model {only!r}: no such model; the config has: {names}"], False
        if chosen.cmd is not None:
            return [f"error: --model {only!r}: runs a cmd, not llama-server: no probe"], False
        models = [chosen]
    reports = asyncio.run(_probe_all(config, models))
    lines = ["probe:", *(r.line() for r in reports)]
    lines += [f"warning: {w}" for r in reports for w in r.warnings]
    return lines, all(r.markers_ok for r in reports)


async def _probe_all(config: Config, models: list[ModelConfig]) -> list[Report]:
    launcher = Launcher(config, f"probe-{os.getpid()}")
    # One at a time: a probe must fit where the models fit, one after another.
    return [await probe(launcher, model) for model in models]


async def probe(launcher: Launcher, model: ModelConfig) -> Report:
    """Start ``model``'s child, test its template against it, stop it."""
    report = Report(model.name)
    try:
        text, why = chat_templates.template_text(model)
    except (OSError, gguf_info.GGUFError) as exc:
        report.error = f"cannot read its template: {exc}"
        return report
    report.source = _source(model, text, why)
    child = launcher(model, lambda _child, _code: None)
    try:
        await child.start()
    except StartError as exc:
        report.error = str(exc).splitlines()[0]
        return report
    headers = {"Authorization": f"Bearer {child.api_key}"} if child.api_key else {}
    try:
        async with httpx.AsyncClient(base_url=child.base_url, headers=headers, timeout=120) as http:
            await _test(http, model, text, report)
    except (httpx.HTTPError, ValueError, LookupError) as exc:  # ValueError: JSON it is not
        report.error = f"llama-server did not answer as expected: {exc!r}"
    finally:
        await child.stop("probe done")
    return report


async def _test(
    http: httpx.AsyncClient, model: ModelConfig, text: str | None, report: Report
) -> None:
    props = (await http.get("/props")).json()
    bos, eos = props.get("bos_token", ""), props.get("eos_token", "")
    plain = await _apply(http, CONVERSATION, None)
    formats_tools = text is not None and chat_templates.reads_tools(text)
    with_tools = await _apply(http, CONVERSATION + TOOL_TURN, TOOLS) if formats_tools else ""
    report.tools = "get_weather" in with_tools
    if text is not None:
        report.rendered = _compare(text, plain, bos, eos, None)
        if formats_tools and report.rendered == "same":
            report.rendered = _compare(text, with_tools, bos, eos, TOOLS)
    else:  # a built-in run without Jinja, or llama-server's own fallback: ChatML
        name = model.chat_template or "chatml"
        known = KNOWN_MARKERS.get(name)
        missing = [m for m in known or [] if m not in plain]
        if known is not None:
            report.rendered = f"as {name}" if not missing else f"without {', '.join(missing)}"
    found = list(dict.fromkeys(_MARKER.findall(plain)))
    for marker in found:
        answer = await http.post("/tokenize", json={"content": marker, "with_pieces": True})
        report.markers[marker] = len(answer.json().get("tokens", []))
    if not found:
        report.warnings.append(f"{model.name}: its template writes no turn markers: {plain[:80]!r}")
    body = {"messages": CONVERSATION, "max_tokens": ANSWER_TOKENS, "temperature": 0, "top_k": 1}
    answer = (await http.post("/v1/chat/completions", json=body)).json()
    report.stops = answer["choices"][0].get("finish_reason") == "stop"
    if not report.stops:
        report.warnings.append(
            f"{model.name}: a greedy answer ran {ANSWER_TOKENS} tokens without ending its turn "
            "(a base model does; an instruct one with the wrong template does too)"
        )
    if not report.markers_ok:
        report.warnings.append(
            f"{model.name}: its turn markers are not special tokens of its vocabulary, so it "
            "reads them as text and answers nonsense; set chat_template to the format it was "
            "trained on (a llama.cpp built-in name, or a Jinja file)"
        )
    if report.rendered.startswith(("differs", "without")):
        report.warnings.append(
            f"{model.name}: llama-server renders its template otherwise than jinja2: "
            f"{report.rendered}"
        )


async def _apply(
    http: httpx.AsyncClient, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> str:
    body: dict[str, Any] = {"messages": messages}
    if tools:
        body["tools"] = tools
    answer = await http.post("/apply-template", json=body)
    answer.raise_for_status()
    return str(answer.json()["prompt"])


def _parsed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each tool call's ``arguments`` as an object, not JSON text: what
    llama-server hands its templates (and what Hugging Face's expect)."""
    out = []
    for message in messages:
        calls = [
            {**call, "function": {**call["function"], "arguments": json.loads(arguments)}}
            for call in message.get("tool_calls", [])
            if isinstance(arguments := call["function"]["arguments"], str)
        ]
        out.append({**message, "tool_calls": calls} if calls else message)
    return out


def _source(model: ModelConfig, text: str | None, why: str) -> str:
    if text is not None:
        return why
    if model.chat_template:
        return f"built-in {model.chat_template} (no Jinja)"
    return "none (llama-server falls back to ChatML)"


def _compare(text: str, prompt: str, bos: str, eos: str, tools: list[dict[str, Any]] | None) -> str:
    messages = CONVERSATION + (_parsed(TOOL_TURN) if tools else [])
    try:
        expected = chat_templates.render(text, messages, tools, bos, eos)
    except Exception as exc:  # a template jinja2 cannot run says so; the test goes on
        return f"not compared (jinja2: {exc})"
    # llama-server drops a leading BOS (it adds its own when it tokenizes).
    if bos and expected.startswith(bos) and not prompt.startswith(bos):
        expected = expected[len(bos) :]
    if expected == prompt:
        return "same"
    at = next((i for i, (a, b) in enumerate(zip(expected, prompt, strict=False)) if a != b), None)
    at = min(len(expected), len(prompt)) if at is None else at
    return (
        f"differs at {at}: jinja2 {expected[at : at + 30]!r}, llama-server {prompt[at : at + 30]!r}"
    )
