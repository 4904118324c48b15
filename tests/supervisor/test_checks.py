"""``corral check``'s warnings (a GGUF without a chat template, a context over the trained
one, a llama-server without the GPU backend the config or the machine has), and ``corral
serve`` logging the same for a model a reload discovers. The binary is
tests/fake_llama_server.py, answering ``--list-devices`` as a CPU or a CUDA build does."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from corral.generator import loader
from corral.generator.cli import PROBE, WARNINGS_CHECK, cli
from corral.supervisor import probe
from corral.supervisor.runtime import checks
from tests import fake_llama_server
from tests.gguf_files import write_gguf
from tests.support import CorralServer, wait_until


def check(tmp_path: Path, config: Mapping[str, object], *flags: str) -> Result:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dict(config)), "utf-8")
    hooks = {WARNINGS_CHECK: checks.check_report, PROBE: probe.probe_check}
    return CliRunner().invoke(cli, ["check", *flags, str(path)], obj=hooks)


def test_a_gguf_without_a_template_is_a_warning_that_names_the_model_and_the_fix(
    tmp_path: Path,
) -> None:
    bare = write_gguf(tmp_path / "bare.gguf", arch="gemma3")
    result = check(tmp_path, {"models": [{"name": "g", "path": str(bare)}]})
    assert result.exit_code == 0, result.output  # a warning leaves the exit code alone
    assert (
        "warning: g: no chat template: its GGUF (bare.gguf) has none and chat_template is "
        "unset, so llama-server falls back to ChatML"
    ) in result.stderr
    assert "set chat_template: gemma" in result.stderr


def test_a_template_from_the_gguf_or_the_config_is_no_warning(tmp_path: Path) -> None:
    own = write_gguf(tmp_path / "own.gguf", chat_template="{{ messages }}")
    bare = write_gguf(tmp_path / "bare.gguf")
    models = [
        {"name": "own", "path": str(own)},
        {"name": "named", "path": str(bare), "chat_template": "chatml"},
    ]
    result = check(tmp_path, {"models": models})
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr


def test_a_context_over_the_trained_one_is_a_warning(tmp_path: Path) -> None:
    own = write_gguf(tmp_path / "own.gguf", chat_template="{{ messages }}", context_length=8192)
    models = [{"name": "long", "path": str(own), "context_size": 16384}]
    result = check(tmp_path, {"models": models})
    assert result.exit_code == 0
    assert (
        "warning: long: context_size 16384 is over the 8192 tokens it was trained with "
        "(llama.context_length); past those its answers degrade; set context_size to 8192 "
        "or less"
    ) in result.stderr
    models[0]["context_size"] = 8192
    assert "context_size" not in check(tmp_path, {"models": models}).stderr


def gpu_config(tmp_path: Path, build: str) -> dict[str, object]:
    own = write_gguf(tmp_path / "own.gguf", chat_template="{{ messages }}")
    return {
        "llama_server": str(fake_llama_server.binary(tmp_path, build)),
        "devices": {"gpu0": {"memory": "8GiB"}},
        "models": [{"name": "big", "path": str(own), "gpu_layers": 99}],
    }


def test_a_llama_server_without_the_declared_gpu_is_a_warning_with_its_devices(
    tmp_path: Path,
) -> None:
    result = check(tmp_path, gpu_config(tmp_path, "cpu"))
    assert result.exit_code == 0, result.output
    assert "lists these devices:\n  (none)\n" in result.stdout
    assert "warning: big: the config declares devices gpu0, but llama-server " in result.stderr
    assert "lists no GPU: it was built without a GPU backend" in result.stderr
    assert "set llama_server to a GPU build" in result.stderr


def test_a_cuda_build_lists_its_gpu_and_warns_of_nothing(tmp_path: Path) -> None:
    result = check(tmp_path, gpu_config(tmp_path, "cuda"))
    assert result.exit_code == 0
    assert "  CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80577 MiB free)" in result.stdout
    assert "warning" not in result.stderr, result.stderr


def test_a_gpu_the_machine_has_counts_as_declared(tmp_path: Path) -> None:
    config = gpu_config(tmp_path, "cpu")
    del config["devices"]
    found = checks.gpu_check(loader.validate(config, "test"), ["gpu0"])
    assert found.warnings and "big: this machine has gpu0, but llama-server" in found.warnings[0]
    assert checks.gpu_check(loader.validate(config, "test"), []).warnings == []  # none: not asked


def test_the_machines_gpus_from_nvidias_device_nodes(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert checks.machine_gpus(str(tmp_path / "nvidia[0-9]*")) == ["gpu0", "gpu1"]


def test_model_goes_with_probe(tmp_path: Path) -> None:
    result = check(tmp_path, {"models": []}, "--model", "x")
    assert result.exit_code == 2 and "--model goes with --probe" in result.output


def test_serve_warns_of_a_model_a_reload_discovers(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    write_gguf(folder / "first.gguf", chat_template="{{ messages }}")
    with CorralServer({"models_path": str(folder)}, tmp_path) as server:
        write_gguf(folder / "second.gguf")  # pulled or copied in: no template
        server.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded config" in server.log(), 20, "the reload")
        wait_until(lambda: "second: no chat template" in server.log(), 20, "the warning")
        log = server.log()
    assert "first: no chat template" not in log


@pytest.mark.parametrize("flags", [["--probe", "--model", "nope"]])
def test_probe_names_an_unknown_model(tmp_path: Path, flags: list[str]) -> None:
    result = check(tmp_path, {"models": []}, *flags)
    assert result.exit_code == 1
    assert "--model 'nope': no such model" in result.stderr
