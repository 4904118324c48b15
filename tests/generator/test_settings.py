"""settings: the pydantic models' own rules and the cross-model ``conflicts``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.generator.keys import spellings
from corral.generator.model_settings import GroupConfig, ModelConfig
from corral.generator.rules import conflicts
from corral.generator.settings import Config


def model(**fields: Any) -> ModelConfig:
    return ModelConfig.model_validate({"name": "a", "path": "a.gguf", **fields})


def error_types(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [e["type"] for e in exc.value.errors()]


@pytest.mark.parametrize(
    "name", ["qwen2.5-coder:3b", "gpt-oss:20b", "org/model:q4_k_m", "llama3.2", "Phi-3+mini"]
)
def test_ollama_style_names_are_accepted(name: str) -> None:
    assert model(name=name).name == name


@pytest.mark.parametrize("name", ["my model", "-rf", ".hidden", "", "tab\tname", "a b:3b"])
def test_names_with_spaces_or_a_leading_sign_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model(name=name)
    assert error_types(exc) == ["string_pattern_mismatch"]


def test_aliases_follow_the_name_rule() -> None:
    with pytest.raises(ValidationError) as exc:
        model(aliases=["ok:1", "not ok"])
    assert [e["loc"] for e in exc.value.errors()] == [("aliases", 1)]


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("context_size", 0, "greater_than"),
        ("context_size", -1, "greater_than"),
        ("ttl", -1, "greater_than_equal"),
        ("gpu_layers", -2, "greater_than_equal"),
        ("concurrency", 0, "greater_than"),
    ],
)
def test_numeric_bounds(key: str, value: int, kind: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model(**{key: value})
    assert error_types(exc) == [kind]


def test_ttl_zero_means_never_and_is_allowed() -> None:
    assert model(ttl=0).ttl == 0


@pytest.mark.parametrize(
    "args",
    [["--port", "8080"], ["--port=8080"], ["--host", "0.0.0.0"], ["--host=::"], ["--port 9"]],
)
def test_args_may_not_set_port_or_host(args: list[str]) -> None:
    with pytest.raises(ValidationError) as exc:
        model(args=args)
    (error,) = exc.value.errors()
    assert error["type"] == "owned_arg"
    assert repr(args[0]) in error["msg"]


def test_args_that_merely_mention_port_are_fine() -> None:
    args = ["--ports-file", "x", "--hostname-alias", "y", "--threads", "8"]
    assert model(args=args).args == args


def test_numbers_in_args_and_env_become_text() -> None:
    made = model(args=["--threads", 8], env={"CUDA_VISIBLE_DEVICES": 0})
    assert made.args == ["--threads", "8"]
    assert made.env == {"CUDA_VISIBLE_DEVICES": "0"}


def test_cmd_needs_the_port_placeholder() -> None:
    with pytest.raises(ValidationError) as exc:
        model(path=None, cmd=["python3", "server.py"])
    (error,) = exc.value.errors()
    assert error["type"] == "cmd_without_port"
    assert error["msg"] == "must contain the {port} placeholder, got 'python3 server.py'"


def test_cmd_as_a_string_is_split_not_run_by_a_shell() -> None:
    made = model(path=None, cmd="./serve --port {port} --name 'a b'")
    assert made.cmd == ["./serve", "--port", "{port}", "--name", "a b"]


def test_a_model_needs_a_path_or_a_cmd() -> None:
    with pytest.raises(ValidationError) as exc:
        model(path=None)
    assert error_types(exc) == ["no_path"]


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValidationError) as exc:
        model(contxt_size=1)
    assert error_types(exc) == ["extra_forbidden"]


def test_camel_case_and_nix_spellings_are_accepted() -> None:
    config = Config.model_validate(
        {
            "defaultTTL": 60,
            "modelsPath": "/m",
            "healthTimeout": 5,
            "apiKeyFile": "/k",
            "models": [
                {
                    "name": "a",
                    "path": "a",
                    "contextSize": 8,
                    "gpuLayers": 2,
                    "systemPrompt": "s",
                    "chatTemplate": "gemma",
                    "extraArgs": ["--x"],
                }
            ],
        }
    )
    model = config.models[0]
    assert (config.default_ttl, str(config.models_path), config.health_timeout) == (60, "/m", 5)
    assert (model.context_size, model.gpu_layers, model.args) == (8, 2, ["--x"])
    assert (model.system_prompt, model.chat_template) == ("s", "gemma")


def test_spellings_lists_each_form_once() -> None:
    assert spellings("default_ttl") == ("default_ttl", "defaultTtl", "defaultTTL")
    assert spellings("args") == ("args", "extraArgs", "extra_args")
    assert spellings("name") == ("name",)


def test_model_finds_by_name_and_alias() -> None:
    config = Config(
        models=[
            model(name="qwen2.5-coder:3b", aliases=["coder"]),
            model(name="llama3.2:3b"),
        ]
    )
    found = config.model("coder")
    assert found is not None and found.name == "qwen2.5-coder:3b"
    assert config.model("llama3.2:3b") is config.models[1]
    assert config.model("gpt-4") is None


def test_group_of_by_members_or_by_the_models_own_key() -> None:
    config = Config.model_validate(
        {
            "groups": {"g": {"members": ["a"]}, "h": {}},
            "models": [{"name": "a", "path": "a"}, {"name": "b", "path": "b", "group": "h"}],
        }
    )
    assert (config.group_of("a"), config.group_of("b"), config.group_of("zz")) == ("g", "h", None)
    assert config.groups["h"] == GroupConfig()


def entries(*models: dict[str, Any]) -> dict[str, Any]:
    return {"models": list(models)}


def test_conflicts_duplicate_names() -> None:
    raw = entries({"name": "a"}, {"name": "b"}, {"name": "a"})
    assert conflicts(raw) == [("models[2].name", "duplicate name 'a'")]


def test_conflicts_alias_equal_to_another_models_name_or_alias() -> None:
    raw = entries(
        {"name": "a", "aliases": ["shared", "a"]},
        {"name": "b", "aliases": ["a"]},
        {"name": "c", "aliases": ["shared"]},
    )
    assert conflicts(raw) == [
        ("models[1].aliases", "alias 'a' is already the name or an alias of 'a'"),
        ("models[2].aliases", "alias 'shared' is already the name or an alias of 'a'"),
    ]


def test_conflicts_group_members_must_be_models_in_one_group() -> None:
    raw = {
        "groups": {"g": {"members": ["a", "ghost"]}, "h": {"members": ["a"]}},
        "models": [{"name": "a"}, {"name": "b", "group": "nope"}],
    }
    assert conflicts(raw) == [
        ("groups.g.members", "'ghost' is not a model; models are a, b"),
        ("groups.h.members", "'a' is already a member of group 'g'"),
        ("models[1].group", "unknown group 'nope'; groups are g, h"),
    ]


def test_conflicts_keep_indices_and_survive_garbage() -> None:
    raw = {
        "groups": {"g": {"members": [{"x": 1}, "a"]}, "h": [1]},
        "models": [
            3,
            {"name": ["x"], "aliases": [{}], "group": ["g"]},
            {"name": "a"},
            {"name": "a"},
        ],
    }
    # Wrong types are field validation's to report; only the real duplicate is a conflict here.
    assert conflicts(raw) == [("models[3].name", "duplicate name 'a'")]
