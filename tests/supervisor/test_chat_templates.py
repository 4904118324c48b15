"""corral's Jinja versions of llama.cpp's built-in templates, and who can call tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.child import chat_templates
from tests.gguf_files import write_gguf

CHAT = [
    {"role": "system", "content": " Be brief. "},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Name a colour."},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def render(name: str, messages: list[dict[str, Any]], **extra: Any) -> str:
    path = chat_templates.shipped_file(name)
    assert path is not None
    env = jinja2.Environment(autoescape=False)
    # llama.cpp's tojson is plain JSON; jinja2's returns HTML-safe Markup.
    env.filters["tojson"] = json.dumps
    template = env.from_string(path.read_text())
    return template.render(messages=messages, add_generation_prompt=True, **extra)


def test_gemma_renders_the_builtin_turns() -> None:
    # llama.cpp's built-in "gemma" (src/llama-chat.cpp): system text trimmed into the first
    # user turn, "assistant" as "model", every content trimmed.
    assert render("gemma", CHAT, bos_token="<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nName a colour.<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_chatml_renders_the_builtin_turns() -> None:
    assert render("chatml", CHAT) == (
        "<|im_start|>system\n Be brief. <|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nName a colour.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("name", ["gemma", "chatml"])
def test_shipped_templates_format_tools_calls_and_results(name: str) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
        },
        {"role": "tool", "content": "sunny"},
    ]
    text = render(name, messages, bos_token="", tools=TOOLS)
    assert '"get_weather"' in text  # the tool's definition
    assert '<tool_call>{"name": "get_weather"' in text.replace("<tool_call>\n", "<tool_call>")
    assert "<tool_response>\nsunny\n</tool_response>" in text


def model(**fields: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "path": "/models/m.gguf", **fields})


def test_tools_with_a_shipped_template() -> None:
    assert chat_templates.tools_refusal(model(chat_template="gemma")) is None


def test_tools_refused_for_a_builtin_without_jinja() -> None:
    reason = chat_templates.tools_refusal(model(chat_template="llama3"))
    assert reason is not None
    assert "chat_template 'llama3' is a llama.cpp built-in, run without Jinja" in reason
    assert "chatml, gemma" in reason


def test_tools_refused_with_no_jinja_in_args() -> None:
    reason = chat_templates.tools_refusal(model(args=["--no-jinja"]))
    assert reason is not None and "--no-jinja" in reason


def test_template_file_with_and_without_tools(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    reason = chat_templates.tools_refusal(model(chat_template=str(plain)))
    assert reason is not None and f"the template file {plain} formats no tools" in reason
    tooled = tmp_path / "tooled.jinja"
    tooled.write_text("{{ tools | tojson }}{% for m in messages %}{{ m.content }}{% endfor %}")
    assert chat_templates.tools_refusal(model(chat_template=str(tooled))) is None


def test_gguf_template_decides_when_none_is_set(tmp_path: Path) -> None:
    bare = write_gguf(tmp_path / "bare.gguf")
    reason = chat_templates.tools_refusal(model(path=str(bare)))
    assert reason is not None and "its GGUF has no chat template" in reason
    tooled = write_gguf(tmp_path / "tooled.gguf", chat_template="{% if tools %}x{% endif %}")
    assert chat_templates.tools_refusal(model(path=str(tooled))) is None


def test_unknowable_cases_are_left_to_the_server(tmp_path: Path) -> None:
    custom = ModelConfig(name="x", cmd=["srv", "--port", "{port}"])
    assert chat_templates.tools_refusal(custom) is None
    assert chat_templates.tools_refusal(model(path=str(tmp_path / "absent.gguf"))) is None


def test_render_runs_a_template_as_hugging_faces_tokenizers_do() -> None:
    text = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if tools %}{{ tools[0] | tojson }}{% endif %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tools = [{"name": "f", "description": "a <b> & c"}]
    rendered = chat_templates.render(text, [{"role": "user", "content": "hi"}], tools, "<s>", "")
    # json.dumps, not jinja2's HTML-safe tojson (which writes \\u003c for <).
    assert rendered == '<s><|user|>hi{"name": "f", "description": "a <b> & c"}<|assistant|>'


def test_render_raises_what_the_template_raises() -> None:
    text = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(ValueError, match="roles must alternate"):
        chat_templates.render(text, [], None, "", "")
