"""services.corral.socketActivation and idleExit: what the module hands the generator, what
it installs, and the units `corral generate` makes of it (nixos-module/socket.nix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.nix.test_flake import SYSTEM
from tests.nix.test_module_contract import generate

pytestmark = pytest.mark.nix

ACTIVATED = (
    "{ services.corral = { enable = true; socketActivation = true; idleExit = 120;"
    ' port = 8080; models.a.path = "/m/a.gguf"; }; }'
)
PLAIN = '{ services.corral = { enable = true; models.a.path = "/m/a.gguf"; }; }'


@pytest.fixture
def real(module: Any, corral_bin: Path) -> Any:
    return type(module)(module.lib, str(corral_bin))


def test_the_socket_not_the_service_is_wanted_at_boot(module: Any) -> None:
    activated = module.value(ACTIVATED, "installed")
    assert (activated["wantedBy"], activated["socketWantedBy"]) == ([], ["sockets.target"])
    plain = module.value(PLAIN, "installed")
    assert (plain["wantedBy"], plain["socketWantedBy"]) == (["multi-user.target"], [])


def test_the_options_reach_the_generator_and_the_units(real: Any, tmp_path: Path) -> None:
    given, config, unit = generate(real, ACTIVATED, tmp_path)
    assert (given["idleExit"], given["service"]["socketActivation"]) == (120, True)
    assert config["idle_exit"] == 120
    assert "Sockets=corral.socket" in unit.splitlines()
    socket = (tmp_path / "corral.socket").read_text(encoding="utf-8").splitlines()
    assert "ListenStream=127.0.0.1:8080" in socket


def test_without_socket_activation_no_socket_is_generated(real: Any, tmp_path: Path) -> None:
    given, config, _ = generate(real, PLAIN, tmp_path)
    assert "idleExit" not in given and "idle_exit" not in config
    assert not (tmp_path / "corral.socket").exists()


def test_the_vm_test_switches_to_a_socket_activated_machine(flake: Any) -> None:
    vm = f"outputs.checks.{SYSTEM}.vm"
    activated = flake(f"{vm}.specialisations.activated")
    assert (activated["idleExit"], activated["service"]["socketActivation"]) == (5, True)
    script = flake(f"{vm}.testScript")
    assert "specialisation/activated/bin/switch-to-configuration test" in script
    assert 'machine.wait_until_fails("systemctl is-active corral.service"' in script
    assert "ExecMainStatus" in script
