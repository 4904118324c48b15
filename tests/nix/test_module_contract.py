"""The contract between Nix and Python: `generatorInput`, fed to the real `corral generate`.

Owns the check that every option reaches config.yaml (and the unit) under the generator's
own key, with the value the user meant, and that the seed user's six models, written as
services.corral.models, generate. The module's own behaviour is test_module_eval.py's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.nix

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: What generate.nix passes; the unit must read config.yaml where the module installs it.
CONFIG_PATH = "/etc/corral/config.yaml"


def generate(module: Any, fixture: str, out: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """generatorInput of ``fixture`` (a file in fixtures/, or a module as Nix text), and the
    config.yaml and unit `corral generate` makes of it."""
    configuration = FIXTURES / fixture if fixture.endswith(".nix") else fixture
    given = module.value(configuration, "generatorInput")
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "settings.json"
    settings.write_text(json.dumps(given), encoding="utf-8")
    done = subprocess.run(
        [str(module.corral_bin), "generate", "--settings", str(settings), "--out", str(out),
         "--config-path", CONFIG_PATH],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"corral generate failed:\n{done.stderr}"
    config = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    unit = (out / f"{given['service']['name']}.service").read_text(encoding="utf-8")
    return given, config, unit


@pytest.fixture
def real(module: Any, corral_bin: Path) -> Any:
    """The harness, with the real corral (only its path ends up in the JSON)."""
    return type(module)(module.lib, str(corral_bin))


def test_every_option_reaches_config_yaml_under_its_own_key(real: Any, tmp_path: Path) -> None:
    given, config, _ = generate(real, "every-option.nix", tmp_path)
    tiny_path = given["models"]["tiny:270m"]["path"]
    assert tiny_path.startswith("/nix/store/") and tiny_path.endswith("-tiny.gguf")
    assert config == {
        "host": "127.0.0.2",
        "port": 8080,
        "llama_server": given["llamaServer"],
        "models_path": "/srv/models",
        "default_ttl": 600,
        "health_timeout": 90.5,
        "groups": {
            "big": {"members": ["coder"], "swap": False, "exclusive": False, "persistent": True}
        },
        "api_keys": ["inline-key"],
        "api_key_file": "/run/credentials/corral.service/api-keys",
        "allowed_origins": ["https://chat.example.org"],
        "metrics_allow": ["10.0.0.0/24"],
        "max_body_bytes": 32 * 1024 * 1024,
        "max_connections": 1024,
        "client_timeout": 60.0,
        "header_timeout": 10.0,
        "max_queued_bytes": 256 * 1024 * 1024,
        "max_receiving_bytes": 128 * 1024 * 1024,
        "upstream_timeout": 1800.0,
        "upstream_writes": False,
        "auto_pull": False,
        "devices": {"gpu0": {"memory": 24 * 1024**3}, "cpu": {"memory": 16 * 1024**3}},
        "memory_margin": 1024**3,
        "max_swap_wait": 30.0,
        "models": [
            {
                "name": "coder",
                "path": "coder.gguf",
                "context_size": 16384,
                "gpu_layers": -1,
                "ttl": 0,
                "aliases": ["code"],
                "args": ["--flash-attn", "on"],
                "env": {"GGML_LOG": "1"},
                "chat_template": "chatml",
                "parameters": {"temperature": 0.25, "top_k": 40},
                "system_prompt": "Answer in code.",
                "memory": 6 * 1024**3,
                "preload": True,
                "unlisted": False,
                "rpc": ["192.168.1.20:50052"],
                "concurrency": 2,
                "max_queue": 512,
                "send_loading_state": True,
            },
            {
                "name": "tiny:270m",
                "path": tiny_path,
                "context_size": 4096,
                "aliases": [],
                "args": [],
                "env": {},
                "parameters": {},
                "preload": False,
                "unlisted": True,
                "rpc": [],
                "concurrency": 8,
                "max_queue": 512,
                "send_loading_state": False,
            },
        ],
        "peers": {
            "laptop": {
                "url": "http://192.168.1.30:11434",
                "api_key_file": "/run/credentials/corral.service/peer-laptop",
                "models": ["llama3.2:3b", {"name": "qwen3:8b", "aliases": ["q"]}],
            }
        },
    }
    assert given["llamaServer"].endswith("-llama-cpp-rocm/bin/llama-server")


def test_the_service_options_reach_the_unit(real: Any, tmp_path: Path) -> None:
    given, _, unit = generate(real, "every-option.nix", tmp_path)
    lines = unit.splitlines()
    corral = given["service"]["corralBin"]
    assert f"ExecStart={corral} serve --config {CONFIG_PATH}" in lines
    assert f"ExecReload={given['service']['killBin']} -HUP $MAINPID" in lines
    assert {"User=corral", "Group=corral", "SupplementaryGroups=render"} <= set(lines)
    assert 'Environment="HIP_VISIBLE_DEVICES=0"' in lines
    assert "DeviceAllow=/dev/kfd rw" in lines  # acceleration = "rocm"
    assert "DynamicUser=yes" not in lines


def test_the_seed_users_six_models_generate(real: Any, tmp_path: Path) -> None:
    given, config, unit = generate(real, "seed.nix", tmp_path)
    assert (config["host"], config["port"], config["default_ttl"]) == ("0.0.0.0", 11434, 3600)
    assert config["models_path"] == "/var/lib/corral/models"
    assert config["llama_server"].endswith("-llama-cpp-cuda/bin/llama-server")
    models = {
        m["name"]: (m["path"], m["context_size"], m.get("gpu_layers")) for m in config["models"]
    }
    assert models == {
        "qwen2.5-coder:3b": ("qwen2.5-coder-3b-instruct-q8_0.gguf", 32768, None),
        "llama3.2:3b": ("llama-3.2-3b-instruct-q8_0.gguf", 131072, None),
        "qwen2.5-coder:14b": ("qwen2.5-coder-14b-instruct-q5_k_m.gguf", 32768, None),
        "qwen2.5-coder:32b": ("qwen2.5-coder-32b-instruct-q4_k_m.gguf", 32768, 35),
        "qwq:32b": ("qwq-32b-preview-q4_k_m.gguf", 32768, 30),
        "gpt-oss:20b": ("gpt-oss-20b-q5_k_m.gguf", 8192, None),
    }
    lines = unit.splitlines()
    assert "DynamicUser=yes" in lines
    assert "SupplementaryGroups=video render" in lines
    assert "DeviceAllow=/dev/nvidiactl rw" in lines  # acceleration = "cuda"
    assert given["service"]["acceleration"] == "cuda"


def unit_of(real: Any, options: str, tmp_path: Path, name: str) -> list[str]:
    configuration = f"{{ services.corral = {{ enable = true; {options} }}; }}"
    return generate(real, configuration, tmp_path / name)[2].splitlines()


def test_null_acceleration_with_cuda_in_nixpkgs_config_renders_a_cuda_unit(
    real: Any, tmp_path: Path
) -> None:
    # Defect 3: a CPU unit (PrivateDevices=yes) would hide the GPU from the CUDA build.
    cuda = type(real)(
        real.lib, real.corral_bin, pkgs_config="{ cudaSupport = true; allowUnfree = true; }"
    )
    _, config, unit = generate(cuda, "{ services.corral.enable = true; }", tmp_path)
    lines = unit.splitlines()
    assert config["llama_server"].endswith("-llama-cpp-cuda/bin/llama-server")
    assert "PrivateDevices=yes" not in lines
    assert "DeviceAllow=/dev/nvidiactl rw" in lines


def test_a_normal_user_gets_no_group_line(real: Any, tmp_path: Path) -> None:
    # Defect 5: Group=alice fails with 216/GROUP where alice's primary group is users.
    lines = unit_of(real, 'user = "alice";', tmp_path, "alice")
    assert "User=alice" in lines
    assert not [line for line in lines if line.startswith("Group=")]


def test_a_new_port_or_host_changes_the_unit(real: Any, tmp_path: Path) -> None:
    # Defect 6: an unchanged unit is only reloaded, and a reload never rebinds.
    def significant(lines: list[str]) -> list[str]:
        return [line for line in lines if line and not line.startswith("#")]

    base = significant(unit_of(real, "port = 11434;", tmp_path, "a"))
    assert base != significant(unit_of(real, "port = 8080;", tmp_path, "b"))
    assert base != significant(unit_of(real, 'host = "127.0.0.2";', tmp_path, "c"))
    limits = "settings.maxConnections = 8; port = 11434;"
    assert base != significant(unit_of(real, limits, tmp_path, "d"))
    models = 'port = 11434; models.m.path = "/m.gguf";'
    assert base == significant(unit_of(real, models, tmp_path, "e"))


def test_a_global_ipv6_prefix_can_be_admitted(real: Any, tmp_path: Path) -> None:
    options = 'host = "::"; ipAddressAllow = [ "192.168.1.0/24" "2001:db8:1234::/64" ];'
    lines = unit_of(real, options, tmp_path, "v6")
    assert "IPAddressAllow=localhost 192.168.1.0/24 2001:db8:1234::/64" in lines
