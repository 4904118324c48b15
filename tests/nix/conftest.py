"""Fixtures for the Nix tests: finding nix and nixpkgs' lib, and evaluating the module.

Owns the one way these tests run Nix (nix-instantiate on nixos-module/tests/eval.nix, the
harness with stand-in NixOS options and stub pkgs) and the skip reasons when Nix or
nixpkgs' lib is missing. In CI (``CI=true``) those reasons are failures: CI has
``../shared`` and installs nix-bin, so a skip there would only hide that nothing ran.
What is asserted lives in the test files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "nixos-module" / "tests" / "eval.nix"
#: flake.nix's outputs against a stand-in nixpkgs.
FLAKE_HARNESS = REPO / "nixos-module" / "tests" / "flake-outputs.nix"
#: Evaluations take well under a second; a build runs the real corral once.
TIMEOUT_S = 120

NO_NIX = "nix-instantiate is not installed (Debian: apt-get install nix-bin; .ci/run does)"
NO_LIB = (
    "NIXPKGS_LIB is not set: point it at nixpkgs' lib directory (a checkout of "
    "nix-community/nixpkgs.lib, see DEVELOPERS.md), e.g. NIXPKGS_LIB=/opt/nixpkgs-lib/lib; "
    "scripts/test sets it to ../shared/nix/nixpkgs-lib/lib when that is there"
)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; in CI, fail with it (everything a Nix test needs is there)."""
    if in_ci():
        pytest.fail(f"CI=true, so this is a failure, not a skip: {reason}", pytrace=False)
    pytest.skip(reason)


def nix_tool(name: str) -> str:
    """The path of a Nix command, or skip (in CI: fail) the test with the reason."""
    found = shutil.which(name)
    if found is None:
        unavailable(NO_NIX if name == "nix-instantiate" else f"{name} is not installed")
    return found


def writable_store() -> None:
    """Skip (in CI: fail) where nix-build cannot add to /nix/store."""
    if not os.access("/nix/store", os.W_OK):
        unavailable("building needs a writable /nix/store (root without a daemon, as in CI)")


def run_nix(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a Nix command without a daemon (root on a local store, as CI runs)."""
    env = {**os.environ, "NIX_REMOTE": ""}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False
    )


class Nix:
    """Runs Nix commands; the fixture ``nix`` skips when nix-instantiate is missing."""

    def __init__(self) -> None:
        self.instantiate = nix_tool("nix-instantiate")

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_nix([nix_tool(tool), *args])


@dataclass(frozen=True)
class ModuleEval:
    """The module evaluated by the harness, for one configuration at a time.

    ``configuration`` is a Nix expression (a module) or the path of a .nix file.
    """

    lib: Path
    corral_bin: str = "/bin/false"
    #: nixpkgs' config as a Nix expression, e.g. ``{ cudaSupport = true; }``. allowUnfree,
    #: as on the machines these tests describe (NVIDIA's driver needs it); the stub, like
    #: nixpkgs, refuses a CUDA llama.cpp without it.
    pkgs_config: str = "{ allowUnfree = true; }"

    def args(self, configuration: str | Path, attr: str) -> list[str]:
        """The harness's arguments, for nix-instantiate or nix-build."""
        return [
            str(HARNESS),
            "--arg", "lib", f"import {self.lib}",
            "--arg", "configuration", str(configuration),
            "--argstr", "corralBin", self.corral_bin,
            "--arg", "pkgsConfig", self.pkgs_config,
            "-A", attr,
        ]  # fmt: skip

    def evaluate(self, configuration: str | Path, attr: str) -> subprocess.CompletedProcess[str]:
        """nix-instantiate --eval --strict --json of ``attr``, whatever its outcome."""
        command = [nix_tool("nix-instantiate"), "--eval", "--strict", "--json"]
        return run_nix([*command, *self.args(configuration, attr)])

    def value(self, configuration: str | Path, attr: str) -> Any:
        """``attr`` of the harness's result, as JSON; the evaluation must succeed."""
        done = self.evaluate(configuration, attr)
        assert done.returncode == 0, f"evaluation failed:\n{done.stderr}"
        return json.loads(done.stdout)

    def error(self, configuration: str | Path, attr: str = "generatorInput") -> str:
        """The message of an evaluation that must fail."""
        done = self.evaluate(configuration, attr)
        assert done.returncode != 0, f"evaluation succeeded, expected a failure: {done.stdout}"
        return done.stderr


@pytest.fixture
def nix() -> Nix:
    """Nix's commands; skip (with the reason) where nix-instantiate is not installed."""
    return Nix()


@pytest.fixture
def nixpkgs_lib() -> Path:
    """nixpkgs' lib directory from $NIXPKGS_LIB; skip (with the reason) when it is unset."""
    nix_tool("nix-instantiate")
    value = os.environ.get("NIXPKGS_LIB")
    if not value:
        unavailable(NO_LIB)
    path = Path(value)
    if not (path / "default.nix").is_file():
        pytest.fail(f"NIXPKGS_LIB: {path} has no default.nix; it must be nixpkgs' lib directory")
    return path


@pytest.fixture
def module(nixpkgs_lib: Path) -> ModuleEval:
    """The harness, with corral stubbed out (nothing here is built)."""
    return ModuleEval(nixpkgs_lib)


@pytest.fixture
def corral_bin() -> Path:
    """The real `corral` of the environment running the tests."""
    found = Path(sys.executable).parent / "corral"
    if not found.is_file():
        found_on_path = shutil.which("corral")
        if found_on_path is None:
            pytest.skip("the corral console script is not installed (pip install -e .)")
        found = Path(found_on_path)
    return found


@pytest.fixture
def build(nix: Nix, module: ModuleEval, corral_bin: Path) -> Any:
    """nix-build an attribute of the harness with the real corral; the finished process."""
    writable_store()

    def run(configuration: str | Path, attr: str = "generated") -> Any:
        real = type(module)(module.lib, str(corral_bin))
        # The stubs call the corral outside the store, so: no sandbox, and build as root
        # (the dev venv's interpreter may sit in /root, which build users cannot enter).
        return nix.run(
            "nix-build", "--no-out-link",
            "--option", "sandbox", "false",
            "--option", "build-users-group", "",
            "--option", "substituters", "",
            *real.args(configuration, attr),
        )  # fmt: skip

    return run


@pytest.fixture
def flake(nix: Nix, nixpkgs_lib: Path) -> Any:
    """``flake(attr)``: an attribute of the harness's result, as JSON."""

    def value(attr: str) -> Any:
        done = nix.run(
            "nix-instantiate", "--eval", "--strict", "--json", str(FLAKE_HARNESS),
            "--arg", "lib", f"import {nixpkgs_lib}", "-A", attr,
        )  # fmt: skip
        assert done.returncode == 0, f"{attr} does not evaluate:\n{done.stderr}"
        return json.loads(done.stdout)

    return value
