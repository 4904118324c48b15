"""nixos-module/requirements.nix: pyproject.toml's requirements as python3Packages attributes.

Owns the mapping's own cases (names, normalization, extras and markers, a missing attribute)
and the check that the flake's package takes every requirement from it. Whether the
resulting package passes nixpkgs' checks is test_flake.py's and test_package_build.py's.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.nix

FUNCTION = REPO / "nixos-module" / "requirements.nix"


def evaluate(nix: Any, lib: Path, expression: str) -> Any:
    """``expression`` with ``r`` bound to requirements.nix; its JSON value or its error."""
    done = nix.run(
        "nix-instantiate", "--eval", "--strict", "--json", "-E",
        f"let r = import {FUNCTION} {{ lib = import {lib}; }}; in {expression}",
    )  # fmt: skip
    return json.loads(done.stdout) if done.returncode == 0 else done.stderr


@pytest.mark.parametrize(
    ("requirement", "attribute"),
    [
        ("pydantic>=2.6", "pydantic"),
        ("PyYAML", "pyyaml"),
        ("types-PyYAML", "types-pyyaml"),
        ("zope.interface>=5", "zope-interface"),
        ("typing_extensions", "typing-extensions"),
        ("uvicorn[standard]>=0.29; python_version < '3.13'", "uvicorn"),
        ("  httptools >= 0.6", "httptools"),
    ],
)
def test_a_requirement_maps_to_its_attribute(
    nix: Any, nixpkgs_lib: Path, requirement: str, attribute: str
) -> None:
    assert evaluate(nix, nixpkgs_lib, f"r.attribute {json.dumps(requirement)}") == attribute


def test_a_missing_attribute_names_the_requirement(nix: Any, nixpkgs_lib: Path) -> None:
    message = evaluate(nix, nixpkgs_lib, 'r.packages { pydantic = 1; } [ "pydantic" "nope>=1" ]')
    assert 'pyproject.toml requires "nope>=1", but python3Packages has no attribute nope' in message


def test_an_unreadable_requirement_is_an_error(nix: Any, nixpkgs_lib: Path) -> None:
    message = evaluate(nix, nixpkgs_lib, 'r.attribute ">=1"')
    assert 'cannot read a package name from the requirement ">=1"' in message


def test_checks_need_the_dev_extra_but_not_its_linters(nix: Any, nixpkgs_lib: Path) -> None:
    dev = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]["dev"]
    as_nix = "[ " + " ".join(json.dumps(r) for r in dev) + " ]"
    kept = evaluate(nix, nixpkgs_lib, f"map r.attribute (r.checkOnly {as_nix})")
    assert {"pytest-asyncio", "jsonschema", "ollama"} <= set(kept)
    assert not {"pytest", "ruff", "mypy"} & set(kept)
    assert not [name for name in kept if name.startswith("types-")]
