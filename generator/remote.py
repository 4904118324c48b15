"""Where models run beyond this machine: llama.cpp RPC workers, and peers.

Owns the settings of both (a model's ``rpc`` addresses, the top-level ``peers``) and the rule
that a name routes to one place only: local models and every peer's models share one
namespace, checked on raw input like the other cross-model rules. It does not route requests
(``corral.supervisor.http.peers``), pass ``--rpc`` (``corral.supervisor.runtime.child.command``) or
open the unit's firewall for them (``units``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from corral.generator.fields import Name, Strict
from corral.generator.keys import spellings

#: A DNS name: letters, digits and hyphens in dot-separated labels.
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

#: A peer's name, as it appears in ``owned_by: peer:<name>`` and in error messages.
PEER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
PeerName = Annotated[str, StringConstraints(pattern=PEER_NAME_PATTERN)]


def split_host_port(address: str) -> tuple[str, int] | None:
    """``("10.0.0.2", 50052)`` from ``10.0.0.2:50052`` (``[fd00::2]:50052`` for IPv6); None
    when ``address`` is not a host and a port from 1 to 65535."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            return None
    try:
        return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        pass
    # A bare IPv6 address has colons of its own: it needs brackets to say where the port is.
    return (host, int(port)) if _HOSTNAME.fullmatch(host) else None


def _rpc_address(value: str) -> str:
    if split_host_port(value) is None:
        raise PydanticCustomError(
            "bad_rpc_address",
            "must be host:port (an rpc-server's address, e.g. 192.168.1.20:50052 or "
            "[fd00::2]:50052), got {value}",
            {"value": repr(value)},
        )
    return value


#: One rpc-server, ``host:port``.
RpcAddress = Annotated[str, AfterValidator(_rpc_address)]


class PeerModel(Strict):
    """A model that a peer serves, with the names clients may use for it here."""

    name: Name = Field(description="The model's name on the peer, and here.")
    aliases: list[Name] = Field(
        default_factory=list, description="Other names for it here; the peer gets `name`."
    )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class PeerConfig(Strict):
    """Another server (a corral, llama-swap, Ollama or any OpenAI-compatible server) whose
    models this corral serves by passing their requests on."""

    url: str = Field(description="The peer's base URL, http or https, e.g. http://10.0.0.2:11434.")
    api_key_file: Path | None = Field(
        default=None,
        description="File whose first line is the key sent to this peer (Bearer); unset = none.",
    )
    models: list[Name | PeerModel] = Field(
        default_factory=list,
        description="The peer's models served here: names, or {name, aliases}.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError(
                "bad_peer_url",
                "must be an http:// or https:// URL with a host, e.g. http://10.0.0.2:11434, "
                "got {value}",
                {"value": repr(value)},
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise PydanticCustomError(
                "bad_peer_url",
                "must hold no query, fragment or credentials (use api_key_file), got {value}",
                {"value": repr(value)},
            )
        return value.rstrip("/")

    @property
    def entries(self) -> list[PeerModel]:
        """Every model as a ``PeerModel``, whichever way it was written."""
        return [m if isinstance(m, PeerModel) else PeerModel(name=m) for m in self.models]


def peer_clashes(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Peer model names and aliases that another local model or peer already routes.

    Checked on raw input (see ``rules``): lenient with values of the wrong type, which field
    validation reports.
    """
    owner: dict[str, str] = {}
    models = raw.get("models")
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            for name in [entry["name"], *_strings(_first(entry, "aliases"))]:
                owner.setdefault(name, f"local model {entry['name']!r}")
    found: list[tuple[str, str]] = []
    peers = raw.get("peers")
    for peer_name, peer in peers.items() if isinstance(peers, Mapping) else []:
        listed = peer.get("models") if isinstance(peer, Mapping) else None
        for index, item in enumerate(listed if isinstance(listed, list) else []):
            names = [item] if isinstance(item, str) else []
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                names = [item["name"], *_strings(item.get("aliases"))]
            for name in names:
                if name in owner:
                    found.append(
                        (
                            f"peers.{peer_name}.models[{index}]",
                            f"{name!r} is already the name or an alias of {owner[name]}; "
                            "a name routes to one place only",
                        )
                    )
                else:
                    owner[name] = f"peer {peer_name!r}'s model {names[0]!r}"
    return found


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _first(entry: Mapping[str, Any], field_name: str) -> Any:
    for key in spellings(field_name):
        if key in entry:
            return entry[key]
    return None
