"""Where the head's unit must be allowed to connect: its rpc-servers and its peers.

Owns turning a model's ``rpc`` addresses and the peers' URLs into IPAddressAllow= entries.
A loopback corral's unit otherwise allows only ``localhost``, which would block llama-server's
``--rpc`` connections and every request passed to a peer. It does not render the unit
(``units``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from corral.generator.remote import split_host_port
from corral.generator.settings import Config, is_loopback


def remote_hosts(config: Config) -> list[str]:
    """Every host the head connects to beyond itself: rpc-servers first, then peers."""
    hosts: list[str] = []
    for model in config.models:
        for address in model.rpc:
            found = split_host_port(address)
            if found is not None:
                hosts.append(found[0])
    for peer in config.peers.values():
        host = urlsplit(peer.url).hostname
        if host:
            hosts.append(host)
    return [h for h in dict.fromkeys(hosts) if not is_loopback(h)]


def allowed(hosts: Sequence[str], networks: Sequence[str]) -> list[str]:
    """IPAddressAllow= entries for ``hosts``: each address as it is. A host name is resolved
    only when llama-server or corral connects, so no address can be named for it here; it
    gets ``networks`` (the unit's ip_address_allow: by default the local networks)."""
    entries: list[str] = []
    for host in hosts:
        try:
            entries.append(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            entries.extend(n for n in networks if n != "any")
    return list(dict.fromkeys(entries))
