"""In CI a Nix test never skips for something CI is meant to have.

Owns the check of conftest's rule: without NIXPKGS_LIB an evaluation test skips and says
why, and with CI=true the same test fails. It runs one such test in a child pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.nix

ONE_EVALUATION_TEST = "tests/nix/test_module_eval.py::test_an_unknown_model_option_is_an_error"


def run_without_lib(ci: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NIXPKGS_LIB", "CI")}
    env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         ONE_EVALUATION_TEST],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_missing_lib_skips_outside_ci() -> None:
    done = run_without_lib("false")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "NIXPKGS_LIB is not set" in done.stdout


def test_a_missing_lib_fails_in_ci() -> None:
    done = run_without_lib("true")
    assert done.returncode == 1, done.stdout
    assert "CI=true, so this is a failure, not a skip: NIXPKGS_LIB is not set" in done.stdout
