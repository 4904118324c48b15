"""The Nix build of `packages.default`, simulated on this machine with pip.

Owns the one check that the flake's recipe builds and passes its own tests, short of
nixpkgs: (1) copy only the files that the flake's source filter keeps; (2) a fresh venv with
only the flake's declared build-system, dependencies and check inputs (their attribute
names are PyPI's normalized names); (3) install the project without dependencies; (4) `pip
check`, the equivalent of nixpkgs' pythonRuntimeDepsCheck; (5) run the test paths the
flake enables, without the marks it disables. pip's cache makes the installs quick after the
first run; the test run itself is most of the time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.nix.conftest import FLAKE_HARNESS, unavailable
from tests.support import REPO

pytestmark = pytest.mark.nix

#: nixpkgs' attributes that are not a PyPI name: the hook brings pytest.
PYPI_NAMES = {"pytestCheckHook": "pytest"}


def checkout_files() -> list[str]:
    """What a flake of this checkout sees: tracked files (and new ones not ignored)."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        unavailable(f"the checkout's files are listed with git: {done.stderr.strip()}")
    return sorted({f for f in done.stdout.split("\0") if f and (REPO / f).is_file()})


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_nix_build_of_the_package_passes_its_checks(
    nix: Any, nixpkgs_lib: Path, tmp_path: Path
) -> None:
    def evaluate(expression: str) -> Any:
        done = nix.run("nix-instantiate", "--eval", "--strict", "--json", "-E", expression)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    harness = f"(import {FLAKE_HARNESS} {{ lib = import {nixpkgs_lib}; }})"
    recipe = evaluate(f"{harness}.recipe")
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps(checkout_files()), encoding="utf-8")
    kept = evaluate(f"{harness}.kept (builtins.fromJSON (builtins.readFile {listing}))")

    # 1. The source, as the filter leaves it.
    src = tmp_path / "src"
    for relative in kept:
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, src / relative)

    # 2. Only what the flake declares.
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    python = str(venv / "bin" / "python")
    declared = recipe["buildSystem"] + recipe["dependencies"] + recipe["nativeCheckInputs"]
    names = [PYPI_NAMES.get(name, name) for name in declared]
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", *names],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if install.returncode != 0 and "No matching distribution" not in install.stderr:
        unavailable(f"pip could not install {names} (is PyPI reachable?):\n{install.stderr}")
    assert install.returncode == 0, install.stderr

    # 3. The project alone, as buildPythonApplication installs the wheel.
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         str(src)], tmp_path, env, 300)  # fmt: skip

    # 4. nixpkgs' pythonRuntimeDepsCheck: every requirement of the wheel is installed.
    run([python, "-m", "pip", "check"], tmp_path, env, 60)

    # 5. pytestCheckHook with the flake's paths and marks; `corral` on PATH as preCheck sets.
    marks = " and ".join(f"not {mark}" for mark in recipe["disabledTestMarks"])
    run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks,
         *recipe["enabledTestPaths"]], src, env, 900)  # fmt: skip
