"""corral.socket: the unit systemd listens with when ``socket_activation`` is on, and what
it changes in corral.service."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.generator.loader import validate
from corral.generator.problems import ConfigError
from corral.generator.unit_settings import ACCELERATIONS, ServiceSettings
from corral.generator.units import render_units
from tests.generator.test_units import MAX_EXPOSURE, analyze, exposure, lines, needs_analyze


def render(service: dict[str, Any] | None = None, **config: Any) -> dict[str, str]:
    raw = {
        "config_path": "/etc/corral/config.yaml",
        "corral_bin": "/usr/bin/corral",
        "socket_activation": True,
    }
    return render_units(ServiceSettings.from_raw({**raw, **(service or {})}), validate(config))


def test_the_service_is_started_by_its_socket_not_at_boot() -> None:
    units = render()
    assert sorted(units) == ["corral.service", "corral.socket"]
    service = lines(units["corral.service"])
    assert {"Sockets=corral.socket", "Requires=corral.socket", "After=corral.socket"} <= set(
        service
    )
    assert "WantedBy=multi-user.target" not in service
    assert "Also=corral.socket" in service
    socket = lines(units["corral.socket"])
    assert {"WantedBy=sockets.target", "Service=corral.service"} <= set(socket)


def test_without_socket_activation_there_is_no_socket() -> None:
    units = render({"socket_activation": False})
    assert list(units) == ["corral.service"]
    assert "WantedBy=multi-user.target" in lines(units["corral.service"])


@pytest.mark.parametrize(
    ("host", "listen", "ipv6"),
    [
        ("127.0.0.1", ["ListenStream=127.0.0.1:11434"], None),
        ("localhost", ["ListenStream=127.0.0.1:11434"], None),
        ("0.0.0.0", ["ListenStream=0.0.0.0:11434"], None),
        ("::", ["ListenStream=[::]:11434"], "BindIPv6Only=both"),  # IPv4 too, as corral's bind
        ("[::1]", ["ListenStream=[::1]:11434"], "BindIPv6Only=ipv6-only"),
        ("192.168.1.5", ["ListenStream=192.168.1.5:11434"], None),
    ],
)
def test_listen_stream_follows_the_host(host: str, listen: list[str], ipv6: str | None) -> None:
    socket = lines(render(host=host)["corral.socket"])
    assert [line for line in socket if line.startswith("ListenStream=")] == listen
    assert [line for line in socket if line.startswith("BindIPv6Only=")] == ([ipv6] if ipv6 else [])
    # A specific address may not exist yet when sockets.target starts.
    assert ("FreeBind=yes" in socket) is (host == "192.168.1.5")


def test_the_socket_keeps_the_address_filter_the_service_cannot_apply_to_it() -> None:
    assert "IPAddressAllow=localhost" in lines(render()["corral.socket"])
    wide = lines(render(host="0.0.0.0")["corral.socket"])
    assert "IPAddressDeny=any" in wide
    assert any(line.startswith("IPAddressAllow=localhost link-local 10.0.0.0/8") for line in wide)


def test_a_host_name_is_an_error_that_says_why() -> None:
    with pytest.raises(ConfigError, match="host: socket activation needs an IP address"):
        render(host="box.lan")


def test_a_privileged_port_needs_no_capability_when_systemd_binds_it() -> None:
    service = lines(render(port=80)["corral.service"])
    assert "CapabilityBoundingSet=" in service
    assert "PrivateUsers=yes" in service
    assert "ListenStream=127.0.0.1:80" in lines(render(port=80)["corral.socket"])


def test_a_new_port_changes_both_units() -> None:
    # switch-to-configuration restarts a changed socket, and a changed socket-activated
    # service stops with its socket, which then starts again on the new port.
    before, after = render(port=11434), render(port=8080)
    assert before["corral.socket"] != after["corral.socket"]
    assert before["corral.service"] != after["corral.service"]


def write_units(tmp_path: Path, acceleration: str, host: str) -> tuple[Path, Path]:
    # verify checks that ExecStart= and ExecReload= name real programs.
    kill = shutil.which("kill") or "/bin/kill"
    service = {"exec_start": [sys.executable, "-c", "pass"], "kill_bin": kill}
    units = render({**service, "acceleration": acceleration}, host=host)
    for name, text in units.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / "corral.service", tmp_path / "corral.socket"


@needs_analyze
@pytest.mark.parametrize("host", ["127.0.0.1", "::"])
def test_systemd_verify_accepts_the_socket_and_its_service(tmp_path: Path, host: str) -> None:
    service, socket = write_units(tmp_path, "cpu", host)
    result = analyze("verify", str(socket), str(service))
    complaints = [line for line in result.stderr.splitlines() if "corral." in line]
    assert (result.returncode, complaints) == (0, [])


@needs_analyze
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_socket_activated_service_keeps_its_exposure(
    tmp_path: Path, acceleration: str, host: str
) -> None:
    service, _ = write_units(tmp_path, acceleration, host)
    assert exposure(service) <= MAX_EXPOSURE
