"""services.corral.ollamaModels: handed to the generator, kept read-only in the unit, and the
assertion that says what to set when services.ollama's store cannot be read as it is.

services.ollama's options are declared here as nixpkgs' ollama.nix declares them (enable,
user, home, and models defaulting to home/models); nothing else of it is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.nix.test_module_contract import generate

pytestmark = pytest.mark.nix

#: nixpkgs' services.ollama options that the module reads, with their defaults.
OLLAMA_OPTIONS = """
  options.services.ollama = {
    enable = lib.mkOption { type = lib.types.bool; default = false; };
    user = lib.mkOption { type = lib.types.nullOr lib.types.str; default = null; };
    home = lib.mkOption { type = lib.types.str; default = "/var/lib/ollama"; };
    models = lib.mkOption {
      type = lib.types.str;
      default = "${config.services.ollama.home}/models";
    };
  };
"""


def machine(ollama: str, corral: str) -> str:
    """A configuration with services.ollama set to ``ollama`` and services.corral to
    ``corral`` (both Nix text), which may read ``config``."""
    return (
        f"{{ config, lib, ... }}: {{ {OLLAMA_OPTIONS} config = {{"
        f" services.ollama = {{ {ollama} }};"
        f" services.corral = {{ enable = true; {corral} }}; }}; }}"
    )


SHARED = "ollamaModels = config.services.ollama.models;"


def test_the_default_ollama_store_fails_with_what_to_set(module: Any) -> None:
    failed = module.value(machine("enable = true;", SHARED), "failedAssertions")
    assert len(failed) == 1
    (message,) = failed
    assert message.startswith(
        "services.corral.ollamaModels: /var/lib/ollama/models is inside services.ollama's "
        "state directory, which systemd keeps in /var/lib/private (mode 0700)"
    )
    for setting in (
        'services.ollama.user = "ollama";',
        'services.ollama.models = "/var/lib/ollama-models";',
        'systemd.tmpfiles.rules = [ "d /var/lib/ollama-models 0700 ollama ollama -" ];',
        'services.corral.user = "ollama";',
    ):
        assert setting in message


def test_a_moved_store_still_needs_ollamas_user(module: Any) -> None:
    ollama = 'enable = true; models = "/var/lib/ollama-models";'
    failed = module.value(machine(ollama, SHARED), "failedAssertions")
    assert [m.split(";")[0] for m in failed] == [
        "services.corral.ollamaModels: /var/lib/ollama-models is services.ollama's store, "
        "whose files only its user can read (UMask=0077)"
    ]
    assert 'set services.ollama.user = "ollama" (a static account; it is null)' in failed[0]
    assert "services.corral.user to the same (it is null)" in failed[0]


def test_the_recipe_passes_and_reaches_the_generator(module: Any) -> None:
    ollama = 'enable = true; user = "ollama"; models = "/var/lib/ollama-models";'
    config = machine(ollama, f'{SHARED} user = "ollama";')
    assert module.value(config, "failedAssertions") == []
    given = module.value(config, "generatorInput")
    assert given["ollamaModels"] == "/var/lib/ollama-models"
    assert given["service"]["user"] == "ollama"


def test_a_store_of_ones_own_needs_nothing_more(module: Any) -> None:
    corral = 'ollamaModels = "/home/alice/.ollama/models"; user = "alice";'
    assert module.value(machine("", corral), "failedAssertions") == []


def test_unset_it_is_left_out(module: Any) -> None:
    given = module.value(machine("enable = true;", ""), "generatorInput")
    assert "ollamaModels" not in given


def test_the_unit_keeps_the_store_read_only(module: Any, corral_bin: Path, tmp_path: Path) -> None:
    real = type(module)(module.lib, str(corral_bin))
    ollama = 'enable = true; user = "ollama"; models = "/var/lib/ollama-models";'
    _, config, unit = generate(real, machine(ollama, f'{SHARED} user = "ollama";'), tmp_path)
    assert config["ollama_models"] == "/var/lib/ollama-models"
    assert "ReadOnlyPaths=-/var/lib/ollama-models" in unit.splitlines()
    assert "User=ollama" in unit.splitlines()
