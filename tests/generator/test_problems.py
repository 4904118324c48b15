"""problems: the wording of every message: place, bad value, what is allowed, and origin."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.generator.problems import ConfigError, describe, from_validation_error, location
from corral.generator.settings import Config


def messages(raw: dict[str, Any], origins: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(raw)
    return from_validation_error(exc.value, Config, skip={"conflicts"}, origins=origins)


def one_model(**fields: Any) -> dict[str, Any]:
    return {"models": [{"name": "a", "path": "a.gguf", **fields}]}


def test_location_reads_like_the_file() -> None:
    assert location(("models", 2, "context_size")) == "models[2].context_size"
    assert location(("groups", "coders", "members", 0)) == "groups.coders.members[0]"
    assert location(()) == ""


def test_config_error_counts_and_lists_problems() -> None:
    error = ConfigError(["a: x", "b: y"], "seed.yaml")
    assert str(error) == "seed.yaml: 2 problems\n  a: x\n  b: y"
    assert str(ConfigError(["a: x"])) == "config: 1 problem\n  a: x"
    assert error.problems == ["a: x", "b: y"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"context_size": 0}, "models[0].context_size: must be > 0, got 0"),
        ({"ttl": -5}, "models[0].ttl: must be >= 0, got -5"),
        ({"context_size": "big"}, "models[0].context_size: must be an integer, got 'big'"),
        ({"context_size": 1.5}, "models[0].context_size: must be a whole number, got 1.5"),
        ({"preload": "maybe"}, "models[0].preload: must be true or false, got 'maybe'"),
        ({"aliases": "x"}, "models[0].aliases: must be a list, got 'x'"),
        ({"env": ["A=1"]}, "models[0].env: must be a mapping, got ['A=1']"),
        (
            {"name": "my model"},
            "models[0].name: 'my model' may use only letters, digits and . _ : / + - "
            "and must start with a letter or digit",
        ),
        (
            {"args": ["--port=8080"]},
            "models[0].args: must not set --port (corral gives each child its own), "
            "got '--port=8080'",
        ),
        (
            {"path": None, "cmd": ["serve"]},
            "models[0].cmd: must contain the {port} placeholder, got 'serve'",
        ),
    ],
)
def test_field_messages_name_place_value_and_rule(fields: dict[str, Any], expected: str) -> None:
    assert messages(one_model(**fields)) == [expected]


def test_top_level_messages() -> None:
    assert messages({"port": 70000, "health_timeout": 0, "host": ""}) == [
        "host: must not be empty, got ''",
        "port: must be <= 65535, got 70000",
        "health_timeout: must be > 0, got 0",
    ]


def test_unknown_key_suggests_the_closest() -> None:
    assert messages(one_model(contxt_size=1)) == [
        "models[0].contxt_size: unknown key; did you mean context_size?"
    ]


def test_unknown_key_suggests_in_the_spelling_used() -> None:
    assert messages(one_model(contextSiz=1)) == [
        "models[0].contextSiz: unknown key; did you mean contextSize?"
    ]


def test_unknown_key_in_a_group_and_at_the_top() -> None:
    raw = {"groups": {"members": {"membrs": []}}, "modles": []}
    # A group may be named like a field ("members"): the hint still comes from GroupConfig.
    assert messages(raw) == [
        "groups.members.membrs: unknown key; did you mean members?",
        "modles: unknown key; did you mean models?",
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    (message,) = messages({"groups": {"g": {"zzz": 1}}})
    assert message == "groups.g.zzz: unknown key; known keys: members, swap, exclusive, persistent"


def test_missing_required_key() -> None:
    assert messages({"models": [{"path": "a.gguf"}]}) == ["models[0].name: required key is missing"]


def test_a_value_from_the_environment_says_so() -> None:
    found = messages({"port": "abc", "default_ttl": -1}, origins={"port": "env PORT"})
    assert found == [
        "port: must be an integer, got 'abc' (from env PORT)",
        "default_ttl: must be >= 0, got -1",
    ]


def test_describe_without_location_is_the_bare_message() -> None:
    error = {"loc": (), "type": "model_type", "input": 3, "msg": "Input should be a dict"}
    assert describe(error, Config) == "must be a mapping, got 3"


def test_unlisted_error_types_fall_back_to_pydantics_wording() -> None:
    error = {"loc": ("x",), "type": "new_kind", "input": 1, "msg": "Something odd"}
    assert describe(error, Config) == "x: something odd"
