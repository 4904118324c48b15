"""units: the service settings, the rendered unit, and what systemd itself says about it.

Golden files pin three representative units; set CORRAL_UPDATE_GOLDEN=1 to rewrite them
after an intended change (then read the diff). The systemd-analyze tests are skipped where
the tool is missing; they are the ones that say the unit loads and how exposed it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.generator.loader import validate
from corral.generator.problems import ConfigError
from corral.generator.unit_settings import ACCELERATIONS, ServiceSettings
from corral.generator.units import quote_arg, quote_env, quote_path, render_units

GOLDEN = Path(__file__).parent / "golden"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
SEED_MODELS = "/home/basnijholt/.cache/llama-swap/models"
#: The exposure the task sets for every accelerator (nixpkgs' llama-swap unit scores 1.5).
MAX_EXPOSURE = 1.2


def render(service: dict[str, Any] | None = None, **config: Any) -> str:
    raw = {"config_path": "/etc/corral/config.yaml", "corral_bin": "/usr/bin/corral"}
    settings = ServiceSettings.from_raw({**raw, **(service or {})})
    units = render_units(settings, validate(config))
    assert list(units) == [f"{settings.name}.service"]
    return units[f"{settings.name}.service"]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


GOLDEN_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu-loopback.service": ({}, {"models_path": "/var/lib/corral-models"}),
    "cuda-seed.service": (
        {"user": "basnijholt", "acceleration": "cuda"},
        {
            "host": "0.0.0.0",
            "models_path": SEED_MODELS,
            "models": [
                {"name": "qwen2.5-coder:3b", "path": "qwen2.5-coder-3b-instruct-q8_0.gguf"},
                {"name": "qwen2.5-coder:32b", "path": "qwen2.5-coder-32b-instruct-q4_k_m.gguf"},
            ],
        },
    ),
    "rocm.service": (
        {"acceleration": "rocm", "environment": {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}},
        {"models_path": "/srv/models", "api_key_file": "/run/agenix/corral-keys"},
    ),
}


@pytest.mark.parametrize("filename", sorted(GOLDEN_CASES))
def test_golden(filename: str) -> None:
    service, config = GOLDEN_CASES[filename]
    text = render(service, **config)
    golden = GOLDEN / filename
    if os.environ.get("CORRAL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), (
        f"rerun with CORRAL_UPDATE_GOLDEN=1: {golden}"
    )


def test_stop_and_reload_reach_every_child() -> None:
    text = lines(render({"kill_bin": "/nix/store/x-coreutils/bin/kill"}))
    assert "KillMode=control-group" in text
    assert "ExecReload=/nix/store/x-coreutils/bin/kill -HUP $MAINPID" in text
    assert "TimeoutStopSec=30" in text
    assert "ExecStart=/usr/bin/corral serve --config /etc/corral/config.yaml" in text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_host_closes_the_ip_firewall(host: str) -> None:
    text = lines(render(host=host))
    assert "IPAddressDeny=any" in text
    assert "IPAddressAllow=localhost" in text


LOCAL = (
    "IPAddressAllow=localhost link-local 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 "
    "100.64.0.0/10 fc00::/7"
)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "gpu-box.lan"])
def test_other_hosts_are_reachable_from_local_networks_only(host: str) -> None:
    text = lines(render(host=host))
    assert "IPAddressDeny=any" in text
    assert LOCAL in text


def test_any_opens_ip_to_every_address() -> None:
    text = lines(render({"ip_address_allow": ["any"]}, host="0.0.0.0"))
    assert not any(line.startswith("IPAddress") for line in text)


def test_host_from_the_environment_wins_like_at_run_time() -> None:
    text = lines(render({"environment": {"HOST": "0.0.0.0"}}, host="127.0.0.1"))
    assert "IPAddressAllow=localhost" not in text
    assert LOCAL in text


def test_allowed_networks_close_the_firewall_around_them() -> None:
    text = lines(render({"ip_address_allow": ["100.64.0.0/10", "fd7a::/48"]}, host="0.0.0.0"))
    assert "IPAddressDeny=any" in text
    assert "IPAddressAllow=localhost 100.64.0.0/10 fd7a::/48" in text


def test_a_specific_address_waits_for_the_network() -> None:
    assert "After=network-online.target" in lines(render(host="192.168.1.5"))
    assert "After=network.target" in lines(render(host="0.0.0.0"))


@pytest.mark.parametrize("acceleration", ACCELERATIONS)
def test_devices_follow_the_accelerator(acceleration: str) -> None:
    text = lines(render({"acceleration": acceleration}))
    allowed = [line.removeprefix("DeviceAllow=") for line in text if "DeviceAllow=" in line]
    assert "DevicePolicy=closed" in text
    if acceleration == "cpu":
        assert ("PrivateDevices=yes" in text, "MemoryDenyWriteExecute=yes" in text) == (True, True)
        assert allowed == []
        return
    # GPU runtimes JIT into W+X memory and read /proc/driver, /proc/cpuinfo.
    assert "PrivateDevices=no" in text
    assert "ProcSubset=all" in text
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in text)
    expected = {
        "cuda": {"/dev/nvidiactl rw", "/dev/nvidia-uvm rw", "char-nvidia-frontend rw"},
        "rocm": {"/dev/kfd rw", "char-drm rw"},
        "vulkan": {"char-drm rw", "/dev/nvidiactl rw"},
    }[acceleration]
    assert expected <= set(allowed)


def test_gpu_groups_default_per_accelerator_and_can_be_declared() -> None:
    assert "SupplementaryGroups=render video" in lines(render({"acceleration": "rocm"}))
    assert not any(
        "SupplementaryGroups" in line for line in lines(render({"acceleration": "cuda"}))
    )
    declared = render({"acceleration": "cuda", "extraGroups": ["video"]})
    assert "SupplementaryGroups=video" in lines(declared)


def test_models_under_home_are_bound_into_an_empty_home() -> None:
    text = lines(
        render(
            {"user": "alice", "exec_start": "/home/alice/.venv/bin/corral serve"},
            models_path="/home/alice/models",
            models=[{"name": "far", "path": "/home/alice/other/far.gguf"}],
            api_key_file="/run/user/1000/keys",
        )
    )
    assert "ProtectHome=tmpfs" in text
    binds = {line.removeprefix("BindReadOnlyPaths=") for line in text if "BindReadOnly" in line}
    assert binds == {
        "-/home/alice/models",
        "-/home/alice/other",
        "-/home/alice/.venv",  # the venv's python and site-packages, not just bin/corral
        "-/run/user/1000/keys",
    }
    assert "User=alice" in text
    assert "DynamicUser=yes" not in text


def test_models_outside_hidden_trees_need_no_binding() -> None:
    text = lines(render(models_path="/var/lib/models"))
    assert "ProtectHome=yes" in text
    assert not any(line.startswith("Bind") for line in text)


def test_ollamas_store_is_read_only_in_the_unit() -> None:
    text = lines(render(ollama_models="/var/lib/ollama-models"))
    assert "ReadOnlyPaths=-/var/lib/ollama-models" in text
    assert not any(line.startswith(("Bind", "ReadWritePaths")) for line in text)
    # A store in a home is bound in read-only, and stays read-only.
    home = lines(render({"user": "alice"}, ollama_models="/home/alice/.ollama/models"))
    assert "BindReadOnlyPaths=-/home/alice/.ollama/models" in home
    assert "ReadOnlyPaths=-/home/alice/.ollama/models" in home
    cache = lines(render(hf_cache="/var/cache/hf/hub", ollama_models="/srv/ollama"))
    read_only = [line for line in cache if line.startswith("ReadOnlyPaths=")]
    assert read_only == ["ReadOnlyPaths=-/srv/ollama", "ReadOnlyPaths=-/var/cache/hf/hub"]


def test_a_writable_path_inside_the_store_is_refused() -> None:
    with pytest.raises(ConfigError) as failure:
        render({"read_write_paths": ["/srv/ollama/blobs"]}, ollama_models="/srv/ollama")
    assert "service.read_write_paths: /srv/ollama/blobs is inside ollama_models" in str(
        failure.value
    )


def test_a_privileged_port_gets_exactly_one_capability() -> None:
    text = lines(render(port=80))
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in text
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in text
    # A capability held inside a user namespace cannot bind the host's port.
    assert "PrivateUsers=yes" not in text
    assert "CapabilityBoundingSet=" in lines(render(port=11434))


def test_quoting_keeps_each_argument_whole() -> None:
    assert quote_arg("/usr/bin/corral") == "/usr/bin/corral"
    assert quote_arg("a b") == '"a b"'
    assert quote_arg("100%") == "100%%"
    assert quote_arg("$HOME") == '"$$HOME"'
    assert quote_arg("/opt/a$b/corral", program=True) == '"/opt/a$b/corral"'  # no $ expansion
    assert quote_arg('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert quote_arg(";") == "\\;"
    assert quote_env("A", "b c%") == '"A=b c%%"'
    assert quote_path("/home/a/my models") == '"-/home/a/my models"'
    assert quote_path("/srv/m:1", bind=True) == '"-/srv/m\\:1"'


def settings_problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        ServiceSettings.from_raw({"config_path": "/etc/corral/config.yaml", **raw}, "s.json")
    assert exc.value.source == "s.json"
    return exc.value.problems


def test_unknown_key_is_located_under_service() -> None:
    assert settings_problems({"acceleraton": "cuda"}) == [
        "service.acceleraton: unknown key; did you mean acceleration?"
    ]


def test_bad_acceleration_names_the_choices() -> None:
    assert settings_problems({"acceleration": "tpu"}) == [
        "service.acceleration: must be one of cpu, cuda, rocm, vulkan, got 'tpu'"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"exec_start": "corral serve"}, "service.exec_start: must start with an absolute"),
        ({"config_path": "config.yaml"}, "service.config_path: must be an absolute path"),
        ({"name": "corral.service"}, "service.name: may use only letters, digits"),
        ({"user": "bad user"}, "service.user: may use only letters, digits and _ . -"),
        ({"ipAddressAllow": ["lan"]}, "service.ipAddressAllow[0]: must be an address"),
        ({"stateDirectory": "../etc"}, "service.stateDirectory: must be a relative path"),
    ],
)
def test_bad_values_say_where_and_what(raw: dict[str, Any], expected: str) -> None:
    assert [p[: len(expected)] for p in settings_problems(raw)] == [expected]


def test_a_bad_variable_name_is_located_at_its_key() -> None:
    assert settings_problems({"environment": {"A-B": "1"}}) == [
        "service.environment.A-B: may use only letters, digits and _, got 'A-B'"
    ]


def test_missing_config_path_is_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSettings.from_raw({})
    assert exc.value.problems == ["service.config_path: required key is missing"]


def test_camel_case_and_a_command_string_are_accepted() -> None:
    settings = ServiceSettings.from_raw(
        {"configPath": "/c.yaml", "execStart": "/bin/corral serve --config '/a b.yaml'"}
    )
    assert settings.command == ["/bin/corral", "serve", "--config", "/a b.yaml"]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def write_unit(tmp_path: Path, acceleration: str, host: str) -> Path:
    # verify checks that ExecStart= and ExecReload= name real programs.
    kill = shutil.which("kill") or "/bin/kill"
    service = {"exec_start": [sys.executable, "-c", "pass"], "kill_bin": kill}
    unit = tmp_path / "corral.service"
    # With Ollama's store, so that systemd reads its ReadOnlyPaths= line too.
    store = "/var/lib/ollama-models"
    unit.write_text(
        render({**service, "acceleration": acceleration}, host=host, ollama_models=store)
    )
    return unit


@needs_analyze
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
def test_systemd_verify_accepts_the_unit(tmp_path: Path, acceleration: str) -> None:
    unit = write_unit(tmp_path, acceleration, "0.0.0.0")
    result = analyze("verify", str(unit))
    complaints = [line for line in result.stderr.splitlines() if "corral.service" in line]
    assert (result.returncode, complaints) == (0, [])


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=true", "--no-pager", str(unit))
    if "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze cannot score offline: {result.stderr.strip()}")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_exposure_is_at_most_1_2(tmp_path: Path, acceleration: str, host: str) -> None:
    # 0.0.0.0 as the seed binds it: reachable from the local networks only, by default.
    assert exposure(write_unit(tmp_path, acceleration, host)) <= MAX_EXPOSURE


def restart_line(text: str) -> str:
    return next(line for line in lines(text) if line.startswith("X-Restart-Triggers="))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"port": 11434}, {"port": 8080}),
        ({"host": "127.0.0.1"}, {"host": "127.0.0.2"}),
        ({}, {"max_body_bytes": 1024}),
        ({}, {"max_connections": 8}),
        ({}, {"client_timeout": 5}),
    ],
)
def test_what_a_reload_cannot_apply_changes_the_unit(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    # NixOS only reloads a service whose unit is unchanged, and a reload never rebinds.
    assert restart_line(render(**before)) != restart_line(render(**after))


def test_what_a_reload_applies_leaves_the_unit_alone() -> None:
    model = {"name": "m", "path": "/m.gguf"}
    assert render(models=[model]) == render(models=[{**model, "context_size": 8192}], default_ttl=5)


def test_the_file_limit_follows_max_connections() -> None:
    # Two files per connection and a reserve, as corral raises its own soft limit at start:
    # systemd's default hard limit would cap that raise.
    assert "LimitNOFILE=2560" in lines(render())  # the default max_connections, 1024
    assert "LimitNOFILE=10512" in lines(render(max_connections=5000))


def test_the_restart_line_reads_the_port_the_service_will_use() -> None:
    line = restart_line(render({"environment": {"PORT": "9000"}}, port=8080))
    assert "port=9000" in line.split()


@pytest.mark.parametrize("acceleration", ACCELERATIONS)
def test_gpu_caches_live_in_the_state_directory(acceleration: str) -> None:
    text = lines(render({"acceleration": acceleration}))
    caches = [line for line in text if "CACHE" in line]
    if acceleration == "cpu":
        assert caches == []
    else:
        assert caches == [
            "Environment=CUDA_CACHE_PATH=%S/corral/cache/cuda "
            "MESA_SHADER_CACHE_DIR=%S/corral/cache/mesa"
        ]


def test_the_accelerations_are_one_list_shipped_as_json() -> None:
    shipped = Path(__file__).parents[2] / "generator" / "accelerations.json"
    assert tuple(json.loads(shipped.read_text(encoding="utf-8"))) == ACCELERATIONS
    assert ACCELERATIONS == ("cpu", "cuda", "rocm", "vulkan")
    schema = ServiceSettings.model_json_schema()["properties"]["acceleration"]
    assert schema["enum"] == list(ACCELERATIONS)


def test_is_loopback_lives_with_the_settings() -> None:
    from corral.generator import settings, units

    assert settings.is_loopback("127.0.0.2") and not settings.is_loopback("0.0.0.0")
    assert units.is_loopback is settings.is_loopback  # type: ignore[attr-defined]  # one copy
