"""services.corral.rpcWorker and services.corral.peers: what the module hands over and installs.

The worker's unit is rendered by the real `corral rpc-worker` from the settings the module
writes, and scored with systemd-analyze like corral's own unit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.generator.test_units import MAX_EXPOSURE, exposure, needs_analyze

pytestmark = pytest.mark.nix

WORKER = (
    '{ services.corral.rpcWorker = { enable = true; host = "192.168.1.20";'
    ' devices = [ "CUDA0" ]; }; }'
)
PEERS = """{ services.corral = { enable = true; models.small.path = "s.gguf";
  models.big = { path = "b.gguf"; rpc = [ "192.168.1.20:50052" ]; };
  peers.laptop = { url = "http://192.168.1.30:11434"; apiKeyFile = "/run/secrets/laptop";
                   models = [ "llama3.2:3b" { name = "qwen3:8b"; aliases = [ "q" ]; } ]; };
  peers.open = { url = "http://192.168.1.31:11434"; models = [ "x" ]; }; }; }"""


def test_the_worker_evaluates_alone_and_is_installed(module: Any) -> None:
    installed = module.value(WORKER, "installed")
    assert installed["units"] == ["corral-rpc-worker"]
    assert installed["etc"] == {}  # no corral: a worker box needs none
    assert module.value(WORKER, "config.systemd.services.corral-rpc.wantedBy") == [
        "multi-user.target"
    ]
    settings = json.loads(module.value(WORKER, "config.systemd.packages.0.settingsFile.text"))
    assert settings["host"] == "192.168.1.20" and settings["port"] == 50052
    assert settings["devices"] == ["CUDA0"]
    # The binary's name is known once llama.cpp is built: the unit's build fills it in.
    assert settings["rpcServer"] == "@rpcServer@"


def test_the_worker_warns_that_it_needs_a_trusted_network(module: Any) -> None:
    [warning] = module.value(WORKER, "warnings")
    assert warning.startswith("services.corral.rpcWorker: ")
    assert "no authentication" in warning and "trusted network" in warning
    loopback = WORKER.replace("192.168.1.20", "127.0.0.1")
    assert module.value(loopback, "warnings") == []


def test_the_worker_has_no_default_host(module: Any) -> None:
    failed = module.value("{ services.corral.rpcWorker.enable = true; }", "failedAssertions")
    assert [f for f in failed if f.startswith("services.corral.rpcWorker.host: must be set")]


def test_peers_and_rpc_reach_the_generator_and_keys_become_credentials(module: Any) -> None:
    given = module.value(PEERS, "generatorInput")
    assert given["models"]["big"]["rpc"] == ["192.168.1.20:50052"]
    assert "rpc" not in given["models"]["small"]
    assert given["peers"] == {
        "laptop": {
            "url": "http://192.168.1.30:11434",
            "apiKeyFile": "/run/credentials/corral.service/peer-laptop",
            "models": ["llama3.2:3b", {"name": "qwen3:8b", "aliases": ["q"]}],
        },
        "open": {"url": "http://192.168.1.31:11434", "models": ["x"]},
    }
    credentials = module.value(PEERS, "installed.loadCredential")
    assert credentials == ["peer-laptop:/run/secrets/laptop"]


def test_without_peers_nothing_is_handed_over(module: Any) -> None:
    given = module.value(
        '{ services.corral = { enable = true; models.m.path = "m.gguf"; }; }', "generatorInput"
    )
    assert "peers" not in given


@pytest.fixture
def real(module: Any, corral_bin: Path) -> Any:
    return type(module)(module.lib, str(corral_bin))


@needs_analyze
@pytest.mark.parametrize("acceleration", ["cpu", "cuda"])
def test_the_workers_unit_scores_at_most_1_2(
    real: Any, corral_bin: Path, tmp_path: Path, acceleration: str
) -> None:
    configuration = WORKER[:-2] + f' services.corral.acceleration = "{acceleration}"; }}'
    settings = json.loads(real.value(configuration, "config.systemd.packages.0.settingsFile.text"))
    assert settings["acceleration"] == acceleration
    settings["rpcServer"] = sys.executable  # a program that exists here
    path = tmp_path / "worker.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    done = subprocess.run(
        [str(corral_bin), "rpc-worker", "--settings", str(path), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "corral-rpc.service"
    assert "-H 192.168.1.20 -p 50052 -d CUDA0" in unit.read_text(encoding="utf-8")
    assert exposure(unit) <= MAX_EXPOSURE


# Issue 24 (14): limited to the head, the worker's port is as closed as it can be.
def test_the_worker_warning_is_silenced_by_ip_address_allow(module: Any) -> None:
    head = WORKER.replace("};", 'ipAddressAllow = [ "192.168.1.10" ]; };', 1)
    assert module.value(head, "warnings") == []
    anyone = WORKER.replace("};", 'ipAddressAllow = [ "any" ]; };', 1)
    assert len(module.value(anyone, "warnings")) == 1


@pytest.fixture
def build_worker(build: Any) -> Any:
    """nix-build the worker's unit package with the real corral; the finished process."""
    return lambda configuration: build(configuration, "config.systemd.packages.0")


# Issue 24 (5): nixpkgs' llama-cpp installs bin/llama-rpc-server, not bin/rpc-server.
def test_the_workers_unit_runs_the_binary_llama_cpp_installs(build_worker: Any) -> None:
    done = build_worker(WORKER)
    assert done.returncode == 0, done.stderr
    unit = Path(done.stdout.strip()) / "lib" / "systemd" / "system" / "corral-rpc.service"
    exec_start = next(
        line for line in unit.read_text(encoding="utf-8").splitlines() if "ExecStart=" in line
    )
    assert re.search(r"/nix/store/\w{32}-llama-cpp/bin/llama-rpc-server -H 192\.168", exec_start)


def test_a_llama_cpp_without_a_worker_binary_fails_the_units_build(build_worker: Any) -> None:
    without = WORKER.replace(
        "{ services.corral.rpcWorker",
        '{ pkgs, ... }: { services.corral.acceleration = "cpu";'
        ' services.corral.llamaCpp.package = pkgs.writeText "llama-cpp-norpc" "";'
        " services.corral.rpcWorker",
    )
    done = build_worker(without)
    assert done.returncode != 0
    assert "has none of llama-rpc-server, ggml-rpc-server, rpc-server" in done.stderr
    assert "corral-rpc-worker.drv' failed" in done.stderr
