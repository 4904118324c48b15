"""Who may use the service, as config values: API keys, browser origins, and the networks
that may scrape ``/metrics`` without a key.

Owns what a valid key is (some text, no surrounding spaces) and the ``allowed_origins``
vocabulary: an origin is ``scheme://host[:port]``, as a browser sends it in ``Origin``, and
``*`` stands for any run of characters (``http://localhost:*``), as in Ollama's
OLLAMA_ORIGINS; the default list; one regular expression for a list. It does not check
requests (the supervisor's ``http/auth.py`` and ``http/origins.py`` do).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

#: Pages a browser loads from this machine (any port), and the schemes that only an app
#: installed here can serve pages from (Electron's app://, Tauri, VS Code webviews): no web
#: site can send these origins, so allowing them lets local UIs in and nobody else.
DEFAULT_ORIGINS = (
    *(
        f"{scheme}://{host}{port}"
        for host in ("localhost", "127.0.0.1", "[::1]")
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)

# scheme://host[:port], or a lone * (every origin). No path, no trailing slash: a browser
# never sends one, so a pattern with one would never match and silently lock a UI out.
_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9+.-]*://[^/?#\s]*)$")


def check_origin(value: str) -> str:
    """``value`` lowercased if it is an origin pattern; a validation error saying why if not."""
    lowered = value.strip().lower()
    if not _PATTERN.match(lowered) or lowered.endswith("://"):
        raise PydanticCustomError(
            "origin",
            "must be an origin such as {example} (scheme://host[:port], * for any part, "
            "no path or trailing /), got {value}",
            {"example": "http://localhost:3000", "value": repr(value)},
        )
    return lowered


def compile_patterns(patterns: tuple[str, ...] | list[str]) -> re.Pattern[str]:
    """One regular expression that matches exactly the origins ``patterns`` allow."""
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    parts = (".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns)
    return re.compile("|".join(f"(?:{part})" for part in parts))


def _check_key(value: str) -> str:
    # An empty key would let in every request that sends an empty one; a padded one could
    # never match, since a presented key is compared without its surrounding spaces.
    if not value.strip():
        raise PydanticCustomError(
            "empty_key", "must not be empty or only spaces, got {value}", {"value": repr(value)}
        )
    if value != value.strip():
        raise PydanticCustomError(
            "padded_key",
            "must not start or end with spaces (they are never part of a sent key), got {value}",
            {"value": repr(value)},
        )
    return value


class KeyFileError(ValueError):
    """A key file that cannot be read, or holds no key; says which."""


def read_key_file(path: Path) -> list[str]:
    """The keys in ``path``, one a line (blank lines and the spaces around a key ignored).

    The one reading of a key file, for ``serve``, ``check`` and the peers' files. A file with
    no key in it is an error: read as "no keys", it would open the service to everyone.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise KeyFileError(f"{path} holds no key (only empty lines)")
    return keys


#: An API key: some text with no surrounding spaces.
ApiKey = Annotated[str, AfterValidator(_check_key)]

#: A browser origin pattern, kept lowercased.
Origin = Annotated[str, AfterValidator(check_origin)]


def _check_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise PydanticCustomError(
            "network",
            "must be an address or a network such as {example}, got {value}",
            {"example": "10.0.0.5 or 10.0.0.0/24", "value": repr(value)},
        ) from None


#: An IP address or network (CIDR), kept in its normal form (10.0.0.5 -> 10.0.0.5/32).
Network = Annotated[str, AfterValidator(_check_network)]
