"""``corral check``: each model's memory and its source; ``--fit`` against declared budgets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from corral.generator import loader
from corral.generator.cli import EXIT_INVALID, MEMORY_CHECK, cli
from corral.generator.sizes import format_size
from corral.supervisor import fit
from corral.supervisor.runtime.child import command
from corral.supervisor.runtime.memory import learned
from tests.supervisor.tiny_gguf import Shape, write
from tests.support import demo_model_file

MIB = 1024**2


def check(tmp_path: Path, config: Mapping[str, object], *flags: str) -> Result:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), **config}), "utf-8")
    runner = CliRunner()
    return runner.invoke(cli, ["check", *flags, str(path)], obj={MEMORY_CHECK: fit.memory_check})


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write(tmp_path / "tiny.gguf", Shape())


def test_check_prints_each_models_estimate_and_its_source(tmp_path: Path, tiny: Path) -> None:
    config = {
        "models": [
            {"name": "tiny", "path": str(tiny), "context_size": 1024},
            {"name": "declared", "path": str(tiny), "memory": "2GiB"},
            {"name": "gone", "path": str(tmp_path / "gone.gguf")},
            {"name": "custom", "cmd": ["srv", "{port}"]},
        ]
    }
    result = check(tmp_path, config)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    memory = lines[lines.index("memory:") + 1 :]
    assert memory[0].startswith("  tiny: ") and "(estimated: cpu " in memory[0]
    assert f"weights {format_size(Shape().tensor_bytes())}" in memory[0]
    assert memory[1] == "  declared: 2.0 GiB (declared: cpu 2.0 GiB)"
    assert (
        memory[2] == f"  gone: skipped: {tmp_path}/gone.gguf is not available here (not estimated)"
    )
    assert memory[3].startswith("  custom: skipped: a custom cmd")


def test_a_measured_figure_is_preferred_to_the_estimate(tmp_path: Path, tiny: Path) -> None:
    entry = {"name": "tiny", "path": str(tiny), "context_size": 1024}
    model = loader.validate({"models": [entry]}, "test").models[0]
    key = learned.launch_id("tiny", command.launch_key(model), tiny.stat().st_size)
    learned.Measurements(tmp_path / "state").put(key, {"cpu": 3 * MIB})
    result = check(tmp_path, {"models": [entry]})
    assert "  tiny: 3.0 MiB (measured: cpu 3.0 MiB)" in result.stdout.splitlines()


def test_fit_fails_for_a_model_larger_than_its_budget(tmp_path: Path) -> None:
    demo = demo_model_file()
    config = {
        "devices": {"cpu": {"memory": "300MiB"}},
        "memory_margin": 0,
        "models": [{"name": "gemma", "path": str(demo), "context_size": 4096}],
    }
    assert check(tmp_path, config).exit_code == 0  # without --fit: a report only
    result = check(tmp_path, config, "--fit")
    assert result.exit_code == EXIT_INVALID
    assert "models[0] (gemma): needs 309.9 MiB on cpu (estimated), more than its budget of " in (
        result.stderr
    )
    assert "300.0 MiB (devices.cpu.memory 300.0 MiB less memory_margin)" in result.stderr


def test_fit_fails_for_persistent_models_that_cannot_share(tmp_path: Path) -> None:
    config = {
        "devices": {"gpu0": {"memory": "24GiB"}},
        "memory_margin": "512MiB",
        "groups": {"always": {"members": ["a", "b"], "persistent": True, "swap": False}},
        "models": [
            {"name": "a", "cmd": ["x", "{port}"], "memory": "12GiB"},
            {"name": "b", "cmd": ["x", "{port}"], "memory": "12GiB"},
        ],
    }
    result = check(tmp_path, config, "--fit")
    assert result.exit_code == EXIT_INVALID
    assert (
        "groups always: persistent models need 24.0 GiB together on gpu0 (a 12.0 GiB, "
        "b 12.0 GiB), more than its budget of 23.5 GiB" in result.stderr
    )


def test_fit_passes_when_everything_fits_and_skips_what_it_cannot_read(
    tmp_path: Path, tiny: Path
) -> None:
    config = {
        "devices": {"cpu": {"memory": "16GiB"}},
        "models": [
            {"name": "tiny", "path": str(tiny)},
            {"name": "elsewhere", "path": "/nix/store/not-here.gguf"},
        ],
    }
    result = check(tmp_path, config, "--fit")
    assert result.exit_code == 0, result.output
    assert "  elsewhere: skipped: /nix/store/not-here.gguf is not available here" in result.stdout


def test_fit_without_declared_devices_says_it_has_nothing_to_check(
    tmp_path: Path, tiny: Path
) -> None:
    result = check(tmp_path, {"models": [{"name": "tiny", "path": str(tiny)}]}, "--fit")
    assert result.exit_code == 0
    assert "note: no devices declared; --fit has no budget to check against" in result.stdout


def test_fit_without_the_estimator_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("models: []\n", "utf-8")
    result = CliRunner().invoke(cli, ["check", "--fit", str(path)])
    assert result.exit_code == 2
    assert "--fit needs the memory estimator" in result.output


def test_the_corral_command_wires_the_estimator_in(tmp_path: Path, tiny: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "tiny", "path": str(tiny)}]}), "utf-8")
    corral = Path(sys.executable).parent / "corral"
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    done = subprocess.run(
        [str(corral), "check", "--fit", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "  tiny: " in done.stdout and "(estimated: cpu " in done.stdout
