"""What `corral check` says about idle_exit (generator/idle_exit.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.generator.idle_exit import notes
from corral.generator.loader import validate
from tests.support import corral_bin


def model(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cmd": ["x", "{port}"], **extra}


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"models": [model("a")]}, []),
        ({"models": [model("a", preload=True, ttl=0)]}, ["can never fire: preloaded with ttl 0"]),
        ({"default_ttl": 0, "models": [model("a", preload=True)]}, ["can never fire"]),
        ({"models": [model("a", ttl=0)]}, ["stops firing once one of these has loaded"]),
        ({"models": [model("a", preload=True)]}, ["loaded again at every start: a"]),
        ({"idle_exit": 0, "models": [model("a", preload=True, ttl=0)]}, []),  # 0: never anyway
    ],
)
def test_what_keeps_corral_up_is_said(config: dict[str, Any], said: list[str]) -> None:
    found = notes(validate(config))
    assert len(found) == len(said)
    for line, words in zip(found, said, strict=True):
        assert words in line


def test_check_warns_when_idle_exit_can_never_fire(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    config = {"idle_exit": 30, "models": [model("a", preload=True, ttl=0)]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        [corral_bin(), "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (
        "warning: idle_exit (30 s) can never fire: preloaded with ttl 0 (never unloaded): a; "
        "corral stays up. Give them a ttl, or drop preload"
    ) in done.stderr
