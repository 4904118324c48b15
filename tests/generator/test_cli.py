"""cli: ``check``, ``generate`` and ``schema`` as a person (or the NixOS module) runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from corral.generator import loader
from corral.generator.cli import EXIT_INVALID, cli, json_schema
from corral.generator.loader import ENV_OVERRIDES

BAD_YAML = """\
models:
  - name: a
    path: a.gguf
    context_size: 0
  - name: a
    path: b.gguf
  - name: c
    path: c.gguf
    contxt_size: 1
"""
#: The NixOS module's JSON: camelCase option names, models keyed by name, unset = null.
NIX_SETTINGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 11434,
    "modelsPath": "/var/lib/corral/models",
    "defaultTTL": 600,
    "healthTimeout": 60,
    "apiKeyFile": None,
    "groups": {"big": {"members": ["qwen2.5-coder:32b"], "persistent": None}},
    "models": {
        "qwen2.5-coder:32b": {
            "path": "models/qwen2.5-coder-32b-instruct-q4_k_m.gguf",
            "contextSize": 32768,
            "gpuLayers": 35,
            "extraArgs": ["--flash-attn", "on"],
            "systemPrompt": "Be brief.",
            "ttl": None,
        },
        "gemma-3-270m": {"path": "gemma-3-270m-q4_k_m.gguf", "chatTemplate": "gemma"},
    },
}
#: The same settings as config.yaml's snake_case and list form.
SNAKE_SETTINGS: dict[str, Any] = {
    "models_path": "/var/lib/corral/models",
    "default_ttl": 600,
    "health_timeout": 60,
    "groups": {"big": {"members": ["qwen2.5-coder:32b"]}},
    "models": [
        {
            "name": "qwen2.5-coder:32b",
            "path": "models/qwen2.5-coder-32b-instruct-q4_k_m.gguf",
            "context_size": 32768,
            "gpu_layers": 35,
            "args": ["--flash-attn", "on"],
            "system_prompt": "Be brief.",
        },
        {"name": "gemma-3-270m", "path": "gemma-3-270m-q4_k_m.gguf", "chat_template": "gemma"},
    ],
}


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shells such as zsh export HOST; the tests decide which overrides are set.
    for variable in ENV_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_check_summarises_each_model_with_its_resolved_path(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "extra.gguf").write_bytes(b"GGUF")
    config = write(tmp_path / "c.yaml", "models: [{name: 'a:1b', path: models/a.gguf}]\n")
    result = run("check", str(config), env={"MODELS_PATH": str(tmp_path), "PORT": "8080"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{config}: ok, 2 model(s), listening on 127.0.0.1:8080",
        f"  a:1b: {tmp_path}/models/a.gguf (ctx=4096 ttl=300s)",
        f"  extra: {tmp_path}/extra.gguf (ctx=4096 ttl=300s)",
    ]
    assert result.stderr == ""


def test_check_warns_about_missing_model_files_but_succeeds(tmp_path: Path) -> None:
    seed = Path(__file__).parents[2] / "examples" / "seed.yaml"
    result = run("check", str(seed), env={"MODELS_PATH": str(tmp_path), "MODEL_TTL": "3600"})
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 7
    assert "(ctx=32768 ttl=3600s ngl=35)" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 6
    assert warnings[0] == (
        f"warning: qwen2.5-coder:3b: {tmp_path}/models/qwen2.5-coder-3b-instruct-q8_0.gguf "
        "does not exist (yet); requests for it will fail until it is downloaded"
    )


def test_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    result = run("check", str(write(tmp_path / "bad.yaml", BAD_YAML)))
    assert result.exit_code == EXIT_INVALID
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}/bad.yaml: 3 problems",
        "  models[0].context_size: must be > 0, got 0",
        "  models[2].contxt_size: unknown key; did you mean context_size?",
        "  models[1].name: duplicate name 'a'",
    ]
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash


def test_check_a_bad_environment_value_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "models: []\n")
    result = run("check", str(config), env={"PORT": "abc"})
    assert result.exit_code == EXIT_INVALID
    assert "port: must be an integer, got 'abc' (from env PORT)" in result.stderr


def test_check_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == EXIT_INVALID
    assert "cannot read: No such file or directory" in result.stderr


def test_the_real_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    corral = Path(sys.executable).parent / "corral"
    if not corral.exists():
        pytest.skip(f"no corral console script beside {sys.executable}; pip install -e . first")
    bad = write(tmp_path / "bad.yaml", BAD_YAML)
    done = subprocess.run(
        [str(corral), "check", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_INVALID, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "models[1].name: duplicate name 'a'" in done.stderr


def test_schema_prints_the_json_schema() -> None:
    result = run("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json_schema()


def generate(tmp_path: Path, settings: dict[str, Any], out: str = "out") -> Result:
    file = write(tmp_path / "settings.json", json.dumps(settings))
    return run("generate", "--settings", str(file), "--out", str(tmp_path / out))


def test_generate_writes_config_yaml_and_the_unit(tmp_path: Path) -> None:
    result = generate(tmp_path, NIX_SETTINGS)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["config.yaml", "corral.service"]
    text = (tmp_path / "out" / "config.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Generated by `corral generate` from settings.json.")
    assert "contextSize" not in text and "context_size: 32768" in text
    unit = (tmp_path / "out" / "corral.service").read_text(encoding="utf-8")
    assert f"--config {tmp_path}/out/config.yaml" in unit


def test_generate_round_trips_to_the_snake_case_config(tmp_path: Path) -> None:
    assert generate(tmp_path, NIX_SETTINGS).exit_code == 0
    written = loader.load(tmp_path / "out" / "config.yaml", {}, discover_models=False)
    assert written == loader.load(
        write(tmp_path / "snake.yaml", json.dumps(SNAKE_SETTINGS)), {}, discover_models=False
    )
    assert generate(tmp_path, SNAKE_SETTINGS, out="snake-out").exit_code == 0
    assert (tmp_path / "snake-out" / "config.yaml").read_bytes() == (
        tmp_path / "out" / "config.yaml"
    ).read_bytes()


def test_generate_twice_is_byte_identical(tmp_path: Path) -> None:
    assert generate(tmp_path, NIX_SETTINGS).exit_code == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert generate(tmp_path, NIX_SETTINGS).exit_code == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == first


def test_generate_reports_config_and_service_problems_together(tmp_path: Path) -> None:
    settings = {
        "models": {"a": {"path": "a", "contextSize": 0}, "b": {"path": "b", "aliases": ["a"]}},
        "service": {"user": "bad user", "acceleration": None},
    }
    result = generate(tmp_path, settings)
    assert result.exit_code == EXIT_INVALID
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {tmp_path}/settings.json: 3 problems"
    assert lines[1:3] == [
        '  models."a".contextSize: must be > 0, got 0',
        """  models."b".aliases: alias 'a' is already the name or an alias of 'a'""",
    ]
    assert lines[3].startswith("  service.user: ")
    assert not (tmp_path / "out").exists()


def test_generate_takes_the_config_path_from_the_service_section_in_camel_case(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(
        json.dumps(
            {
                "models": {"m": {"path": "/m.gguf"}},
                "service": {"configPath": "/etc/corral/config.yaml", "execStart": "/bin/true"},
            }
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["generate", "--settings", str(settings), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    unit = (tmp_path / "out" / "corral.service").read_text(encoding="utf-8")
    assert "ExecStart=/bin/true" in unit
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--settings",
            str(settings),
            "--out",
            str(tmp_path / "o2"),
            "--exec-start",
            "/bin/false",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ExecStart=/bin/false" in (tmp_path / "o2" / "corral.service").read_text()


def test_generate_names_the_options_the_settings_came_from(tmp_path: Path) -> None:
    # What the NixOS module passes (generate.nix): its errors name services.corral options.
    settings = {
        "models": {"a": {"path": "a.gguf", "ttl": -5}},
        "service": {"user": "bad user"},
    }
    locations = json.dumps({"": "services.corral.", "service.": "services.corral."})
    file = write(tmp_path / "settings.json", json.dumps(settings))
    out = str(tmp_path / "out")
    result = run("generate", "--settings", str(file), "--out", out, "--locations", locations)
    assert result.exit_code == EXIT_INVALID
    lines = result.stderr.splitlines()
    assert '  services.corral.models."a".ttl: must be >= 0, got -5' in lines
    assert any(line.startswith("  services.corral.user: ") for line in lines), lines


def test_the_acceleration_flag_offers_the_one_list() -> None:
    from corral.generator.unit_settings import ACCELERATIONS

    option = next(p for p in cli.commands["generate"].params if p.name == "acceleration")
    assert list(option.type.choices) == list(ACCELERATIONS)  # type: ignore[attr-defined]
