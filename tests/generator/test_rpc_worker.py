"""rpc_worker: the rpc-server unit, its argv, its settings and what systemd says about it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from corral.generator.cli import cli
from corral.generator.problems import ConfigError
from corral.generator.rpc_worker import RpcWorkerSettings, render
from corral.generator.unit_settings import ACCELERATIONS
from tests.generator.test_units import MAX_EXPOSURE, analyze, exposure, lines, needs_analyze


def unit(**raw: Any) -> str:
    worker = RpcWorkerSettings.from_raw({"rpc_server": "/opt/llama/bin/rpc-server", **raw})
    [text] = render(worker).values()
    return text


def test_it_binds_the_chosen_address_with_its_devices() -> None:
    text = lines(unit(host="192.168.1.20", port=50100, devices=["CUDA0", "CUDA1"], threads=4))
    assert (
        "ExecStart=/opt/llama/bin/rpc-server -H 192.168.1.20 -p 50100 -d CUDA0,CUDA1 -t 4" in text
    )
    assert "After=network-online.target" in text


def test_there_is_no_default_host() -> None:
    with pytest.raises(ConfigError) as exc:
        RpcWorkerSettings.from_raw({})
    assert any(p.startswith("rpc_worker.host: ") for p in exc.value.problems), exc.value.problems


def test_beyond_loopback_only_the_local_networks_may_connect() -> None:
    text = lines(unit(host="0.0.0.0"))
    assert "IPAddressDeny=any" in text
    assert any(
        line.startswith("IPAddressAllow=localhost link-local 10.0.0.0/8") for line in text
    ), text
    assert "IPAddressAllow=localhost" in lines(unit(host="127.0.0.1"))


def test_the_unit_says_it_has_no_authentication() -> None:
    assert "NO authentication" in unit(host="10.0.0.2")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"host": "10.0.0.2", "port": 0}, "rpc_worker.port: "),
        ({"host": "10.0.0.2", "acceleration": "tpu"}, "rpc_worker.acceleration: must be one of"),
        ({"host": "10.0.0.2", "hots": 1}, "rpc_worker.hots: unknown key"),
    ],
)
def test_bad_settings_are_located(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        RpcWorkerSettings.from_raw(raw)
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


def test_the_command_writes_the_unit(tmp_path: Path) -> None:
    settings = tmp_path / "worker.json"
    settings.write_text(
        json.dumps({"host": "10.0.0.2", "rpcServer": "/x/rpc-server", "port": None})
    )
    result = CliRunner().invoke(
        cli, ["rpc-worker", "--settings", str(settings), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "-H 10.0.0.2 -p 50052" in (tmp_path / "corral-rpc.service").read_text()
    settings.write_text(json.dumps({"port": 1}))
    result = CliRunner().invoke(
        cli, ["rpc-worker", "--settings", str(settings), "--out", str(tmp_path)]
    )
    assert result.exit_code != 0 and "rpc_worker.host" in result.output


def write_worker(tmp_path: Path, acceleration: str, host: str) -> Path:
    # verify checks that ExecStart= names a real program.
    path = tmp_path / "corral-rpc.service"
    path.write_text(unit(rpc_server=sys.executable, host=host, acceleration=acceleration))
    return path


@needs_analyze
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
def test_systemd_verify_accepts_the_worker(tmp_path: Path, acceleration: str) -> None:
    path = write_worker(tmp_path, acceleration, "10.0.0.2")
    result = analyze("verify", str(path))
    complaints = [line for line in result.stderr.splitlines() if "corral-rpc.service" in line]
    assert (result.returncode, complaints) == (0, [])


@needs_analyze
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
@pytest.mark.parametrize("host", ["127.0.0.1", "192.168.1.20"])
def test_worker_exposure_is_at_most_1_2(tmp_path: Path, acceleration: str, host: str) -> None:
    assert exposure(write_worker(tmp_path, acceleration, host)) <= MAX_EXPOSURE


# Issue 24 (5): nixpkgs' llama-cpp installs the worker as llama-rpc-server.
@pytest.mark.parametrize("name", ["llama-rpc-server", "ggml-rpc-server", "rpc-server"])
def test_the_worker_is_found_on_path_under_each_of_its_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    binary = tmp_path / name
    binary.write_text("#!/bin/sh\n", encoding="utf-8")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert RpcWorkerSettings.model_validate({"host": "192.168.1.20"}).rpc_server == binary
