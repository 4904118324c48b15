"""loader: files, the seed's environment variables, input shapes, paths and discovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.generator import loader
from corral.generator.problems import ConfigError

SEED = Path(__file__).parents[2] / "examples" / "seed.yaml"
#: The seed user's systemd service, exactly.
SEED_ENV = {
    "LLAMA_CPP_BIN": "/x/bin/llama-server",
    "MODELS_PATH": "/home/basnijholt/.cache/llama-swap/models",
    "HOST": "0.0.0.0",
    "PORT": "11434",
    "MODEL_TTL": "3600",
}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loader.validate(raw, "test")
    return exc.value.problems


def test_the_seed_loads_with_its_service_environment() -> None:
    config = loader.load(SEED, SEED_ENV)
    assert (config.host, config.port, config.default_ttl) == ("0.0.0.0", 11434, 3600)
    assert config.llama_server == "/x/bin/llama-server"
    assert [m.name for m in config.models][:2] == ["qwen2.5-coder:3b", "llama3.2:3b"]
    big = config.model("qwen2.5-coder:32b")
    assert big is not None and big.gpu_layers == 35 and big.context_size == 32768
    assert big.path == Path(
        "/home/basnijholt/.cache/llama-swap/models/models/qwen2.5-coder-32b-instruct-q4_k_m.gguf"
    )


def test_environment_wins_over_every_spelling_in_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text('{"defaultTTL": 5, "port": 1, "host": "h", "modelsPath": "/f"}')
    config = loader.load(file, {"MODEL_TTL": "60", "PORT": "2", "MODELS_PATH": "/e"})
    assert (config.default_ttl, config.port, config.host) == (60, 2, "h")
    assert config.models_path == Path("/e")


def test_an_empty_variable_is_unset(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("port: 8080\n")
    assert loader.load(file, {"PORT": ""}).port == 8080


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        loader.load(None, {"PORT": "abc", "MODEL_TTL": "-1"})
    assert exc.value.source == "environment"
    assert exc.value.problems == [
        "port: must be an integer, got 'abc' (from env PORT)",
        "default_ttl: must be >= 0, got '-1' (from env MODEL_TTL)",
    ]


def test_relative_paths_resolve_against_models_path() -> None:
    raw = {"models": [{"name": "x", "path": "models/x.gguf"}, {"name": "y", "path": "/abs/y.gguf"}]}
    config = loader.resolve_paths(loader.validate(loader.apply_env(raw, {"MODELS_PATH": "/m"})))
    assert [m.path for m in config.models] == [Path("/m/models/x.gguf"), Path("/abs/y.gguf")]


def test_without_models_path_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/u")
    raw = {"models": [{"name": "x", "path": "x.gguf"}, {"name": "y", "path": "~/y.gguf"}]}
    config = loader.resolve_paths(loader.validate(raw))
    assert [m.path for m in config.models] == [tmp_path / "x.gguf", Path("/home/u/y.gguf")]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"ttl": -1}, "models[1].ttl: must be >= 0, got -1"),
        ({"context_size": 0}, "models[1].context_size: must be > 0, got 0"),
        ({"contxt_size": 1}, "models[1].contxt_size: unknown key; did you mean context_size?"),
        (
            {"args": ["--port", "1"]},
            "models[1].args: must not set --port (corral gives each child its own), got '--port'",
        ),
        (
            {"args": ["--port=8080"]},
            "models[1].args: must not set --port (corral gives each child its own), "
            "got '--port=8080'",
        ),
        (
            {"args": ["--host", "0.0.0.0"]},
            "models[1].args: must not set --host (corral gives each child its own), got '--host'",
        ),
        (
            {"path": None, "cmd": "python3 serve.py"},
            "models[1].cmd: must contain the {port} placeholder, got 'python3 serve.py'",
        ),
        ({"name": "a"}, "models[1].name: duplicate name 'a'"),
        ({"aliases": ["a"]}, "models[1].aliases: alias 'a' is already the name or an alias of 'a'"),
        (
            {"aliases": ["shared"]},
            "models[1].aliases: alias 'shared' is already the name or an alias of 'a'",
        ),
    ],
)
def test_each_rule_fails_with_a_located_message(model: dict[str, Any], expected: str) -> None:
    first = {"name": "a", "path": "a.gguf", "aliases": ["shared"]}
    assert problems({"models": [first, {"name": "b", "path": "b.gguf", **model}]}) == [expected]


def test_a_group_member_must_be_a_model() -> None:
    raw = {
        "groups": {"coders": {"members": ["a", "ghost"]}},
        "models": [{"name": "a", "path": "a"}],
    }
    assert problems(raw) == ["groups.coders.members: 'ghost' is not a model; models are a"]


def test_all_problems_are_reported_at_once() -> None:
    raw = {
        "models": [
            {"name": "a", "path": "a.gguf", "context_size": 0},
            {"name": "a", "path": "b.gguf", "ttl": -1},
            {"name": "c", "path": "c.gguf", "contxt_size": 1},
        ]
    }
    assert problems(raw) == [
        "models[0].context_size: must be > 0, got 0",
        "models[1].ttl: must be >= 0, got -1",
        "models[2].contxt_size: unknown key; did you mean context_size?",
        "models[1].name: duplicate name 'a'",
    ]


def test_a_conflict_alone_is_still_an_error() -> None:
    raw = {"models": [{"name": "a", "path": "a"}, {"name": "a", "path": "b"}]}
    assert problems(raw) == ["models[1].name: duplicate name 'a'"]


def test_normalize_turns_the_nix_attribute_set_into_the_list() -> None:
    raw = {"models": {"qwq:32b": {"path": "q.gguf", "gpuLayers": 30}, "b": {"path": "b"}}}
    assert loader.normalize(raw)["models"] == [
        {"name": "qwq:32b", "path": "q.gguf", "gpuLayers": 30},
        {"name": "b", "path": "b"},
    ]


def test_null_means_unset_for_settings_but_not_inside_free_form_values() -> None:
    raw = {
        "port": None,
        "groups": {"g": {"members": ["a"], "swap": None}},
        "models": {
            "a": {"path": "a", "contextSize": None, "ttl": None, "parameters": {"stop": None}}
        },
    }
    config = loader.validate(raw)
    assert config.port == 11434 and config.groups["g"].swap is True
    assert (config.models[0].context_size, config.models[0].ttl) == (4096, None)
    assert config.models[0].parameters == {"stop": None}


def test_errors_in_the_nix_shape_name_the_attribute() -> None:
    raw = {"models": {"a": {"path": "a"}, "qwq:32b": {"path": "q", "contextSize": 0}}}
    assert problems(raw) == ['models."qwq:32b".contextSize: must be > 0, got 0']


def gguf(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"GGUF")


def test_discovery_serves_unnamed_files_by_their_stem(tmp_path: Path) -> None:
    gguf(tmp_path, "named.gguf", "extra-q4.gguf", "sub/deep.gguf", "my model é.gguf", "notes.txt")
    raw = {"models": [{"name": "mine", "path": "named.gguf"}, {"name": "x", "path": "/x.gguf"}]}
    config = loader.discover(
        loader.resolve_paths(loader.validate({**raw, "models_path": tmp_path}))
    )
    found = {m.name: m.path for m in config.models[2:]}
    assert found == {
        "deep": tmp_path / "sub/deep.gguf",
        "extra-q4": tmp_path / "extra-q4.gguf",
        "my-model": tmp_path / "my model é.gguf",
    }


def test_discovery_skips_split_tails_and_names_the_model_without_the_part(tmp_path: Path) -> None:
    gguf(tmp_path, *(f"big-q4-0000{i}-of-00003.gguf" for i in (1, 2, 3)), "best-of-breed.gguf")
    config = loader.load(None, {"MODELS_PATH": str(tmp_path)})
    assert {m.name: m.path for m in config.models} == {
        "best-of-breed": tmp_path / "best-of-breed.gguf",
        "big-q4": tmp_path / "big-q4-00001-of-00003.gguf",
    }


def test_discovery_does_not_shadow_a_declared_name_or_alias(tmp_path: Path) -> None:
    gguf(tmp_path, "coder.gguf", "other.gguf")
    file = tmp_path / "c.yaml"
    file.write_text("models: [{name: q, path: other.gguf, aliases: [coder]}]\n")
    config = loader.load(file, {"MODELS_PATH": str(tmp_path)})
    assert [m.name for m in config.models] == ["q"]
    assert loader.load(file, {"MODELS_PATH": str(tmp_path / "missing")}).models[0].name == "q"


def test_discovery_can_be_turned_off(tmp_path: Path) -> None:
    gguf(tmp_path, "a.gguf")
    assert loader.load(None, {"MODELS_PATH": str(tmp_path)}, discover_models=False).models == []


def test_read_file_yaml_json_and_empty(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("port: 1\n")
    (tmp_path / "b.json").write_text('{"port": 2}')
    (tmp_path / "c.yaml").write_text("# nothing yet\n")
    assert loader.read_file(tmp_path / "a.yaml") == {"port": 1}
    assert loader.read_file(tmp_path / "b.json") == {"port": 2}
    assert loader.read_file(tmp_path / "c.yaml") == {}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "models: [\n", "not valid YAML: "),
        ("bad.json", "{", "not valid JSON: "),
        ("list.yaml", "- a\n", "must be a mapping at the top level, got list"),
        ("missing.yaml", None, "cannot read: No such file or directory"),
    ],
)
def test_read_file_errors_name_the_file(
    tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as exc:
        loader.read_file(tmp_path / name)
    assert exc.value.source == str(tmp_path / name)
    assert exc.value.problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("pulled", "stem", "names"),
    [
        ("gemma3:270m", "gemma3-270m", ["gemma3:270m", "gemma3-270m"]),
        ("gemma3", "gemma3-latest", ["gemma3:latest", "gemma3", "gemma3-latest"]),
        ("ollama:me/tiny:1", "me-tiny-1", ["me/tiny:1", "ollama:me/tiny:1", "me-tiny-1"]),
        ("hf:org/repo-GGUF:Q4_K_M", "repo-GGUF-Q4_K_M", ["hf:org/repo-GGUF:Q4_K_M"]),
        ("https://example.com/m.gguf", "m", ["m"]),
    ],
)
def test_a_pulled_file_is_served_by_the_name_it_was_pulled_by(
    tmp_path: Path, pulled: str, stem: str, names: list[str]
) -> None:
    gguf(tmp_path, f"{stem}.gguf")
    (tmp_path / f"{stem}.library.json").write_text(json.dumps({"source": pulled}))
    (model,) = loader.load(None, {"MODELS_PATH": str(tmp_path)}).models
    assert [model.name, *model.aliases] == list(dict.fromkeys([*names, stem]))
