"""outbound: a head with rpc-servers or peers may reach exactly them through its firewall."""

from __future__ import annotations

from typing import Any

import pytest

from tests.generator.test_units import lines, render

RPC_MODEL = {"name": "big", "path": "/m/big.gguf", "rpc": ["192.168.1.20:50052", "[fd00::3]:50052"]}


def allow_line(text: str) -> str:
    [line] = [line for line in lines(text) if line.startswith("IPAddressAllow=")]
    return line


def test_a_loopback_head_may_reach_its_rpc_servers_and_peers_and_nothing_else() -> None:
    peers = {"box": {"url": "http://10.0.0.7:11434", "models": ["x"]}}
    text = render(models=[RPC_MODEL], peers=peers)
    assert "IPAddressDeny=any" in lines(text)
    assert allow_line(text) == "IPAddressAllow=localhost 192.168.1.20 fd00::3 10.0.0.7"


def test_a_head_without_them_stays_closed() -> None:
    assert allow_line(render(models=[{"name": "a", "path": "/m/a.gguf"}])) == (
        "IPAddressAllow=localhost"
    )


def test_a_peer_on_loopback_needs_nothing_more() -> None:
    peers = {"box": {"url": "http://127.0.0.1:8081", "models": ["x"]}}
    assert allow_line(render(peers=peers)) == "IPAddressAllow=localhost"


def test_a_host_name_gets_the_allowed_networks() -> None:
    # Resolved only when corral connects: no address can be named for it at generate time.
    peers = {"box": {"url": "https://gpu-box.lan", "models": ["x"]}}
    text = render({"ip_address_allow": ["100.64.0.0/10"]}, peers=peers)
    assert allow_line(text) == "IPAddressAllow=localhost 100.64.0.0/10"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5"])
def test_beyond_loopback_they_are_added_to_the_networks(host: str) -> None:
    service: dict[str, Any] = {"ip_address_allow": ["192.168.0.0/16"]}
    text = render(service, host=host, models=[{**RPC_MODEL, "rpc": ["203.0.113.9:50052"]}])
    assert allow_line(text) == "IPAddressAllow=localhost 192.168.0.0/16 203.0.113.9"


def test_any_stays_open() -> None:
    text = render({"ip_address_allow": ["any"]}, host="0.0.0.0", models=[RPC_MODEL])
    assert not any(line.startswith("IPAddress") for line in lines(text))
