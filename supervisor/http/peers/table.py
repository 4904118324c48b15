"""Which client-facing name goes to which peer, and with which key. Pure apart from reading
the key files.

Owns the routing table built from ``Config.peers``: every name and alias of a peer's model,
the name the peer knows it by, and the peer's own ``Authorization`` value (read from its
``api_key_file``). A table belongs to one config: a reload builds a new one, so keys never
outlive the config that named them. It does not send anything (``forward``) or read requests
(``router``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.generator.access import KeyFileError, read_key_file
from corral.generator.remote import PeerConfig
from corral.generator.settings import Config


@dataclass(frozen=True)
class Peer:
    """One peer: its name, its base URL, and what to send as ``Authorization`` (or None).

    ``key_error`` says why its key could not be read; requests for its models then fail
    with it, and every other model keeps working.
    """

    name: str
    url: str
    authorization: str | None = field(default=None, repr=False)  # never in a log line
    key_error: str | None = None


@dataclass(frozen=True)
class Route:
    """A client-facing name that goes to a peer, and the name the peer knows the model by."""

    peer: Peer
    model: str


@dataclass(frozen=True)
class PeerTable:
    peers: Mapping[str, Peer]
    routes: Mapping[str, Route]
    #: Each peer's models as configured: (name, aliases), in order, for the model lists.
    listed: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]

    @classmethod
    def from_config(cls, config: Config) -> PeerTable:
        peers = {name: _peer(name, peer) for name, peer in config.peers.items()}
        routes: dict[str, Route] = {}
        listed: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        for name, peer in config.peers.items():
            for model in peer.entries:
                for alias in model.names:
                    routes[alias] = Route(peers[name], model.name)
            listed[name] = tuple((m.name, tuple(m.aliases)) for m in peer.entries)
        return cls(peers, routes, listed)

    def route(self, name: object) -> Route | None:
        return self.routes.get(name) if isinstance(name, str) else None


def _peer(name: str, peer: PeerConfig) -> Peer:
    if peer.api_key_file is None:
        return Peer(name, peer.url)
    try:
        key = read_key_file(peer.api_key_file)[0]
    except KeyFileError as exc:
        return Peer(name, peer.url, key_error=f"peers.{name}.api_key_file: {exc}")
    return Peer(name, peer.url, f"Bearer {key}")
