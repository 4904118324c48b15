"""API keys: who may use the service.

Owns reading the keys (config.yaml's ``api_keys`` and the lines of ``api_key_file``, so no
secret needs to sit in the Nix store), taking a key from a request (``Authorization:
Bearer``, ``x-api-key``, or Basic auth's password) and comparing it in constant time. A
request without a valid key gets a 401 (in the shape its API's clients read) and learns
nothing else; one that sends a key header twice gets a 400 (which one counts is a guess that
proxies and corral could make differently); /health stays open, and /metrics to the
``metrics_allow`` networks (a Prometheus scrape from another host). A browser (it accepts
HTML) is asked for the key with Basic auth, so the status page works with keys set. Keys are
never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from corral.generator.access import KeyFileError, read_key_file
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.errors import BadRequest, Unauthorized

#: Paths anyone may call: a load balancer's or systemd's liveness probe.
OPEN_PATHS = frozenset({"/health"})

#: The headers a key may come in; each may appear once.
KEY_HEADERS = (b"authorization", b"x-api-key")


#: Where ``RequireKey`` leaves the key a request was let in with (``still_allowed``).
KEY_SCOPE = "corral.key"

#: The path that ``metrics_allow`` opens.
METRICS_PATH = "/metrics"

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True)
class Keys:
    keys: tuple[bytes, ...]
    metrics_allow: Networks = ()

    @classmethod
    def from_config(cls, config: Config) -> Keys:
        keys = list(config.api_keys)
        if config.api_key_file is not None:
            try:
                keys += read_key_file(config.api_key_file)
            except KeyFileError as exc:
                raise ConfigError([f"api_key_file: {exc}"]) from exc
        networks = tuple(ipaddress.ip_network(n) for n in config.metrics_allow)
        return cls(tuple(k.encode() for k in keys), networks)

    def may_scrape(self, client: tuple[str, int] | None) -> bool:
        """Whether ``client`` (the peer's address) is in ``metrics_allow``."""
        if client is None or not self.metrics_allow:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.metrics_allow)

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def accepts(self, presented: bytes | None) -> bool:
        if not presented:
            return False
        # Compare against every key, so the time taken says nothing about which one matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(key, presented)
        return matched


def still_allowed(scope: Scope, keys: Keys) -> bool:
    """Whether a request let in before would be let in by ``keys`` (a reload's): a stream
    that outlives the reload that revoked its key must end."""
    if not keys.required or scope["path"] in OPEN_PATHS:
        return True
    if scope["path"] == METRICS_PATH and keys.may_scrape(scope.get("client")):
        return True
    return keys.accepts(scope.get(KEY_SCOPE))


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key a request carries, from whichever of the three places it uses."""
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].strip()
    auth = headers.get(b"authorization", b"")
    scheme, _, value = auth.partition(b" ")
    if scheme.lower() == b"bearer":
        return value.strip()
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


class RequireKey:
    """ASGI middleware: every request but OPEN_PATHS needs a key when keys are configured."""

    def __init__(self, app: ASGIApp, keys: Callable[[], Keys]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.keys()
        if scope["type"] != "http" or not keys.required or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and keys.may_scrape(scope.get("client")):
            await self.app(scope, receive, send)
            return
        names = [name for name, _ in scope["headers"] if name in KEY_HEADERS]
        if len(names) != len(set(names)):
            twice = next(n for n in names if names.count(n) > 1).decode()
            response = BadRequest(f"the {twice} header was sent more than once").response()
            await response(scope, receive, send)
            return
        headers = dict(scope["headers"])
        presented = presented_key(headers)
        if keys.accepts(presented):
            scope[KEY_SCOPE] = presented
            await self.app(scope, receive, send)
            return
        # A browser asks its user for the key (any user name, the key as the password).
        browser = b"text/html" in headers.get(b"accept", b"")
        response = Unauthorized(
            "a valid API key is required: send it as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Basic realm="corral"'} if browser else None,
        ).response(scope["path"])
        await response(scope, receive, send)
