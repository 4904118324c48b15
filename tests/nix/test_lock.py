"""corral.lock.json in the NixOS module: `corral lock` against the fake registries writes the
lock, and nixos-module/lock.nix turns its entries into `pkgs.fetchurl` calls with its hashes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.supervisor.pull.lock import VERSION as LOCK_VERSION
from tests.nix.conftest import REPO, ModuleEval, run_nix
from tests.supervisor.fake_registries import ollama_model, tiny_gguf
from tests.supervisor.file_server import FileServer
from tests.supervisor.test_library import corral, write_lock

pytestmark = pytest.mark.nix

LOCK_COMMAND = (
    "nix eval --json .#nixosConfigurations.HOST.config.services.corral.lockInput"
    " > lock-input.json && corral lock --config lock-input.json"
)


@pytest.fixture
def lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, dict[str, Any]]]:
    with FileServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url(""))
        (tmp_path / "src").mkdir()
        gguf = tiny_gguf(tmp_path / "src" / "m.gguf", padding=1000)
        lock = write_lock(server, tmp_path, gguf)
        yield tmp_path / "corral.lock.json", lock


def recorded(nixpkgs_lib: Path, lock_path: Path, name: str, source: str) -> Any:
    """lock.nix's answer for one model, with fetchurl and runCommand recording their calls."""
    expression = f"""
      let
        lib = import {nixpkgs_lib};
        pkgs = {{
          fetchurl = a: "fetchurl(" + a.url + " " + a.hash + " " + a.name + ")";
          runCommand = name: env: script: "runCommand(" + name + ": " + script + ")";
        }};
        lock = import {REPO / "nixos-module" / "lock.nix"} {{
          inherit lib pkgs; lockFile = {lock_path};
        }};
      in lock.model {json.dumps(name)} {{
        source = {json.dumps(source)}; extraArgs = [ "--x" ]; parameters = {{ top_k = 5; }};
        systemPrompt = null;
      }}
    """
    done = run_nix(["nix-instantiate", "--eval", "--strict", "--json", "-E", expression])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_lock_entries_become_fetchurl_calls_with_their_hashes(
    nixpkgs_lib: Path, lock_file: tuple[Path, dict[str, Any]]
) -> None:
    path, lock = lock_file
    gemma = lock["sources"]["gemma3:270m"]["files"][0]
    one = recorded(nixpkgs_lib, path, "gemma3:270m", "gemma3:270m")
    assert one["path"] == f"fetchurl({gemma['url']} {gemma['hash']} gemma3-270m.gguf)"
    assert one["parameters"] == {"temperature": 0.5, "top_k": 5}
    assert one["extraArgs"] == ["--x"]

    split = lock["sources"]["hf:owner/Model-GGUF:Q6_K"]["files"]
    parts = recorded(nixpkgs_lib, path, "split", "hf:owner/Model-GGUF:Q6_K")
    # Both parts sit in one folder under their own names; the model is the first.
    for part in split[:2]:
        link = f"ln -s fetchurl({part['url']} {part['hash']} {part['name']}) $out/{part['name']}"
        assert link in parts["path"]
    assert parts["path"].endswith(f"/{split[0]['name']}")
    mmproj = split[2]
    assert parts["extraArgs"] == [
        "--x",
        "--mmproj",
        f"fetchurl({mmproj['url']} {mmproj['hash']} {mmproj['name']})",
    ]


def test_the_module_fetches_a_locked_source_and_refuses_a_missing_one(
    module: ModuleEval, lock_file: tuple[Path, dict[str, Any]]
) -> None:
    path, _ = lock_file
    given = module.value(
        "{ services.corral = { enable = true; lockFile = "
        f'{path}; models."gemma3:270m".source = "gemma3:270m"; }}; }}',
        "generatorInput",
    )
    model = given["models"]["gemma3:270m"]
    assert model["path"].startswith("/nix/store/") and model["path"].endswith("-gemma3-270m.gguf")
    assert model["source"] == "gemma3:270m"
    assert model["parameters"] == {"temperature": 0.5}

    message = module.error(
        "{ services.corral = { enable = true; lockFile = "
        f'{path}; models.q.source = "qwen2.5-coder:7b"; }}; }}'
    )
    assert 'services.corral.models.q.source: "qwen2.5-coder:7b" is not in the lock file' in message
    assert LOCK_COMMAND in message


def test_without_a_lock_file_the_message_says_to_write_one(module: ModuleEval) -> None:
    message = module.error('{ services.corral = { enable = true; models.q.source = "q:7b"; }; }')
    assert "(services.corral.lockFile is null)" in message
    # Issue 24 (7): a command that needs only the Nix config, not a config.yaml.
    assert f"write the lock with `{LOCK_COMMAND}`" in message
    assert "set services.corral.lockFile = ./corral.lock.json" in message


def test_lock_refuses_a_url_without_a_published_digest(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        'models: [{name: m, source: "https://example.invalid/m.gguf"}]'
    )
    result = corral("lock", "--config", str(tmp_path / "c.yaml"))
    assert result.exit_code == 1
    assert "publishes no sha256, so it cannot be locked" in result.stderr


# Issue 24 (7): a NixOS user has no config.yaml; services.corral.lockInput is what
# `corral lock` reads, and it evaluates before the lock exists.
LOCKED = (
    '{{ services.corral = {{ enable = true; {lock} models."gemma3:270m".source = "gemma3:270m";'
    ' models.local.path = "/srv/l.gguf"; models.local.contextSize = 2048; }}; }}'
)


def test_a_nixos_user_writes_the_lock_from_lock_input(
    module: ModuleEval, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_input = module.value(LOCKED.format(lock=""), "config.services.corral.lockInput")
    assert lock_input == {"models": {"gemma3:270m": {"source": "gemma3:270m"}}}
    # What `nix eval --json ….lockInput > lock-input.json` writes, then `corral lock`.
    (tmp_path / "lock-input.json").write_text(json.dumps(lock_input), encoding="utf-8")
    with FileServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url(""))
        gguf = tiny_gguf(tmp_path / "m.gguf", padding=1000)
        ollama_model(server, "library/gemma3", "270m", gguf, params={"temperature": 0.5})
        result = corral(
            "lock", "--config", str(tmp_path / "lock-input.json"), "--registry", server.url("")
        )
    assert result.exit_code == 0, result.output
    locked = LOCKED.format(lock=f"lockFile = {tmp_path / 'corral.lock.json'};")
    model = module.value(locked, "generatorInput")["models"]["gemma3:270m"]
    assert model["path"].endswith("-gemma3-270m.gguf")
    assert model["parameters"] == {"temperature": 0.5}


def test_a_lock_of_another_version_is_refused(module: ModuleEval, tmp_path: Path) -> None:
    (tmp_path / "corral.lock.json").write_text('{"version": 2, "sources": {}}', encoding="utf-8")
    message = module.error(LOCKED.format(lock=f"lockFile = {tmp_path / 'corral.lock.json'};"))
    assert "services.corral.lockFile: " in message
    assert "has version 2, and this corral reads version 1; write it again with" in message
    # lock.nix reads the version that supervisor/pull/lock.py writes.
    text = (REPO / "nixos-module" / "lock.nix").read_text(encoding="utf-8")
    assert f"  version = {LOCK_VERSION};" in text
