"""The module's build step, built for real: `services.corral.generated` with nix-build.

Owns the check that generate.nix's script runs the generator and lays out its output where
`systemd.packages` and /etc expect it, and that a wrong but type-correct setting fails the
build (which is what stops `nixos-rebuild`) with the generator's own message. The stub
pkgs' runCommand stands in for stdenv's; the corral it runs is the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.nix

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_the_generated_config_and_unit_are_laid_out_for_nixos(build: Any) -> None:
    done = build(FIXTURES / "seed.nix")
    assert done.returncode == 0, done.stderr
    out = Path(done.stdout.strip())
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "lib"]
    unit = (out / "lib" / "systemd" / "system" / "corral.service").read_text(encoding="utf-8")
    assert "serve --config /etc/corral/config.yaml" in unit
    assert "name: qwen2.5-coder:32b" in (out / "config.yaml").read_text(encoding="utf-8")


def test_an_alias_clash_fails_the_build_with_the_generators_message(build: Any) -> None:
    done = build(
        "{ services.corral = { enable = true;"
        ' models.a = { path = "/m/a.gguf"; aliases = [ "b" ]; };'
        ' models.b.path = "/m/b.gguf"; }; }'
    )
    assert done.returncode != 0
    assert "aliases: alias 'b' is already the name or an alias of" in done.stderr
    assert "corral-generated.drv' failed" in done.stderr


def test_a_build_error_names_the_nix_option(build: Any) -> None:
    done = build(
        '{ services.corral = { enable = true; models.a.path = "/m/a.gguf";'
        " settings.maxBodyBytes = 0; settings.models.a.concurrency = 0;"
        " settings.models.a.cocurrency = 1; settings.fooBar = 1; }; }"
    )
    assert done.returncode != 0
    # Issue 24 (10): a key given through settings is named where it was written.
    assert "services.corral.settings.maxBodyBytes: must be > 0, got 0" in done.stderr
    assert 'services.corral.settings.models."a".concurrency: must be > 0, got 0' in done.stderr
    assert 'services.corral.settings.models."a".cocurrency: unknown key; did you mean' in (
        done.stderr
    )
    # An unknown key's hint offers the names a NixOS user writes (camelCase).
    unknown = next(line for line in done.stderr.splitlines() if "settings.fooBar" in line)
    assert "known keys: host, port, llamaServer, modelsPath, ollamaModels, hfCache," in unknown
    assert "_" not in unknown.split("known keys: ")[1]
