"""The README's NixOS section, tried as a new NixOS user tries it (issue 24, item 4 and 7).

Owns evaluating the README's own `configuration.nix` with the module and the stand-in
NixOS options (nixpkgs' NVIDIA assertion included): it must pass NixOS's assertions, say
nothing, give the unit CUDA and the driver's libraries, and hand `corral lock` its input;
and the flake example must make corral follow the user's nixpkgs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.nix.conftest import REPO

pytestmark = pytest.mark.nix


def block(heading: str) -> str:
    """The ```nix block of the README's NixOS section that starts with ``heading``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## NixOS\n") :]
    for found in re.finditer(r"```nix\n(.*?)```", section, re.DOTALL):
        if found[1].startswith(heading):
            return found[1]
    raise AssertionError(f"the README's NixOS section has no nix block starting {heading!r}")


@pytest.fixture
def configuration(tmp_path: Path) -> Path:
    path = tmp_path / "configuration.nix"
    path.write_text(block("# configuration.nix"), encoding="utf-8")
    return path


def test_the_readme_configuration_passes_nixos_and_runs_on_the_gpu(
    module: Any, configuration: Path
) -> None:
    got = module.value(configuration, "outcome")
    assert got["failedAssertions"] == []
    assert got["warnings"] == []
    assert got["acceleration"] == "cuda"
    assert got["graphics"] is True
    assert module.value(configuration, "config.hardware.nvidia.open") is True


def test_the_readme_configuration_gives_corral_lock_its_input(
    module: Any, configuration: Path
) -> None:
    lock_input = module.value(configuration, "config.services.corral.lockInput")
    assert lock_input == {"models": {"qwen2.5-coder:3b": {"source": "ollama:qwen2.5-coder:3b"}}}
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "services.corral.lockInput > lock-input.json" in text
    assert "corral lock --config lock-input.json" in text


def test_the_readme_flake_follows_the_users_nixpkgs() -> None:
    flake = block("# flake.nix of your system")
    assert 'inputs.corral.inputs.nixpkgs.follows = "nixpkgs";' in flake


def test_the_readme_flake_and_configuration_make_a_cuda_machine(
    nix: Any, nixpkgs_lib: Path, configuration: Path
) -> None:
    # From the flake example on: its nixosSystem, corral's module, configuration.nix, with
    # pkgs made from its nixpkgs.config (allowUnfree), as NixOS makes them.
    (configuration.parent / "flake.nix").write_text(
        block("# flake.nix of your system"), encoding="utf-8"
    )
    done = nix.run(
        "nix-instantiate", "--eval", "--strict", "--json",
        str(REPO / "nixos-module" / "tests" / "flake-outputs.nix"),
        "--arg", "lib", f"import {nixpkgs_lib}",
        "--arg", "userFlake", str(configuration.parent),
        "-A", "userMachine",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    machine = json.loads(done.stdout)
    assert machine["failedAssertions"] == []
    assert machine["warnings"] == []
    assert (machine["acceleration"], machine["graphics"]) == ("cuda", True)
    assert machine["llamaServer"].endswith("-llama-cpp-cuda/bin/llama-server")
    assert machine["lockInput"] == {
        "models": {"qwen2.5-coder:3b": {"source": "ollama:qwen2.5-coder:3b"}}
    }


def test_the_readmes_type_message_is_the_modules(module: Any) -> None:
    quoted = (
        'A definition for option `services.corral.models."qwq:32b".contextSize\''
        " is not of type `null or (positive integer, meaning >0)'"
    )
    message = module.error(
        '{ services.corral = { enable = true; models."qwq:32b".contextSize = "big"; }; }'
    )
    assert quoted in message
    assert quoted in (REPO / "README.md").read_text(encoding="utf-8")
