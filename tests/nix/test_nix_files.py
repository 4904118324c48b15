"""Every .nix file parses, and flake.lock and the demo model pin what shared/ says.

Owns the checks that need nix-instantiate alone (no nixpkgs): syntax, and the pins that
must be copied verbatim rather than invented.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
#: Build outputs and environments are not ours to parse.
SKIPPED_DIRS = {".git", ".venv", "node_modules", "result", ".mypy_cache", ".ruff_cache"}
#: The real pins, kept beside the repository (shared/ is copied next to CI's clone too).
FLAKE_INPUTS = REPO.parent / "shared" / "nix" / "flake-inputs.json"


def nix_files() -> list[Path]:
    found = []
    for path in sorted(REPO.rglob("*.nix")):
        parts = set(path.relative_to(REPO).parts)
        if not parts & SKIPPED_DIRS and not any(p.startswith("result") for p in parts):
            found.append(path)
    return found


def test_the_nix_files_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in nix_files()}
    assert {"flake.nix", "nixos-module/default.nix", "nixos-module/tests/vm.nix"} <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_parses(nix: Any, path: Path) -> None:
    done = nix.run("nix-instantiate", "--parse", str(path))
    assert done.returncode == 0, f"{path.relative_to(REPO)} does not parse:\n{done.stderr}"


def shared_inputs() -> dict[str, Any]:
    if not FLAKE_INPUTS.is_file():
        pytest.skip(f"{FLAKE_INPUTS} is not there: the pins are checked where shared/ is")
    data: dict[str, Any] = json.loads(FLAKE_INPUTS.read_text(encoding="utf-8"))
    return data


def test_flake_lock_is_version_7_with_locked_github_inputs() -> None:
    lock = json.loads((REPO / "flake.lock").read_text(encoding="utf-8"))
    assert lock["version"] == 7
    assert lock["root"] == "root"
    inputs = lock["nodes"]["root"]["inputs"]
    assert inputs == {"nixpkgs": "nixpkgs", "systems": "systems"}
    for name in inputs:
        locked = lock["nodes"][name]["locked"]
        assert locked["type"] == "github"
        assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), (name, locked["rev"])
        assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"]), name


def test_flake_lock_pins_are_the_shared_ones_verbatim() -> None:
    expected = shared_inputs()
    lock = json.loads((REPO / "flake.lock").read_text(encoding="utf-8"))
    for name in ("nixpkgs", "systems"):
        assert lock["nodes"][name] == {
            "locked": expected[name]["locked"],
            "original": expected[name]["original"],
        }


def test_demo_model_wheel_hashes_are_the_shared_ones() -> None:
    wheels = shared_inputs()["demo_model_wheels"]
    hashes = [wheels[name] for name in sorted(wheels) if name.endswith(".whl")]
    text = (REPO / "nixos-module" / "demo-model.nix").read_text(encoding="utf-8")
    assert re.findall(r'"(sha256-[A-Za-z0-9+/]{43}=)"', text) == hashes
