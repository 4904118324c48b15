"""Which chat template a model runs with, and whether that template lets it call tools.

Owns the Jinja templates corral ships for llama.cpp's built-in template names (``gemma``,
``chatml``), and the rule that says whether a model can call tools. A built-in name runs
llama-server with ``--no-jinja``, and without Jinja llama-server refuses every request with
``tools`` (a 500); so for the names it has a file for, corral runs the Jinja version instead,
which renders the same turns and formats tools. It also renders a template the way Hugging
Face's tokenizers do (jinja2), for ``corral check --probe`` to compare with llama-server's
rendering. It does not build the command line (``command``) or read GGUF headers
(``gguf_info``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import gguf_info

_HERE = Path(__file__).parent / "templates"
_TEMPLATE_SUFFIXES = (".jinja", ".j2", ".tmpl")
#: A template formats tools when it reads the ``tools`` variable (llama.cpp's own check
#: renders with a tool and looks for its name; this is the same test without rendering).
_READS_TOOLS = re.compile(r"\btools\b")


def is_template_file(chat_template: str) -> bool:
    """True when ``chat_template`` names a file rather than a llama.cpp built-in template."""
    return "/" in chat_template or chat_template.endswith(_TEMPLATE_SUFFIXES)


def shipped() -> list[str]:
    """The built-in names corral has a Jinja template for."""
    return sorted(p.stem for p in _HERE.glob("*.jinja"))


def shipped_file(name: str) -> Path | None:
    """corral's Jinja template for the built-in name ``name``; None when it has none."""
    path = _HERE / f"{name}.jinja"
    return path if "/" not in name and path.is_file() else None


def template_text(model: ModelConfig) -> tuple[str | None, str]:
    """The Jinja text llama-server will run for ``model``, and where it comes from.

    None when it runs no Jinja (a built-in name corral has no file for, ``--no-jinja``, or
    a GGUF without a template, where llama-server falls back to its built-in ChatML).
    Raises OSError (and ``gguf_info.GGUFError``) when a file cannot be read.
    """
    name = model.chat_template
    if "--no-jinja" in model.args:
        return None, "its args turn Jinja off (--no-jinja)"
    if name and is_template_file(name):
        return Path(name).read_text(encoding="utf-8"), f"the template file {name}"
    if name:
        path = shipped_file(name)
        if path is None:
            return None, f"chat_template {name!r} is a llama.cpp built-in, run without Jinja"
        return path.read_text(encoding="utf-8"), f"corral's {name} template"
    if model.path is None:
        return None, "it has no GGUF file"
    text = gguf_info.read(model.path).chat_template
    if text is None:
        return None, "its GGUF has no chat template (llama-server falls back to ChatML)"
    return text, "its GGUF's template"


def tools_refusal(model: ModelConfig) -> str | None:
    """Why ``model`` cannot call tools, or None when it can (or corral cannot know).

    A ``cmd`` model runs some other server, which answers for itself. An unreadable file is
    left to llama-server too: it reports that better than a guess here would.
    """
    if model.cmd is not None:
        return None
    try:
        text, source = template_text(model)
    except (OSError, gguf_info.GGUFError):
        return None
    if text is None:
        reason = source
    elif not reads_tools(text):
        reason = f"{source} formats no tools"
    else:
        return None
    return (
        f"{reason}; set chat_template to a Jinja template file that formats tools "
        f"(corral ships one for each of: {', '.join(shipped())})"
    )


def reads_tools(text: str) -> bool:
    """True when the Jinja template ``text`` formats the ``tools`` it is given."""
    return _READS_TOOLS.search(text) is not None


def render(
    text: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    bos_token: str,
    eos_token: str,
) -> str:
    """The prompt ``text`` makes of ``messages`` (and ``tools``), with the generation prompt,
    rendered as Hugging Face's ``apply_chat_template`` does; raises jinja2's errors."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    # jinja2's own tojson escapes <, > and & for HTML; templates expect json.dumps.
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    context: dict[str, Any] = {
        "messages": messages,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": True,
    }
    if tools:
        context["tools"] = tools
    return env.from_string(text).render(**context)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _raise(message: str) -> None:
    raise ValueError(message)
