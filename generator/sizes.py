"""Memory sizes as people write them: ``24GiB``, ``512MiB``, ``24GB``, or a number of bytes.

Owns parsing a size into bytes and printing bytes back in the unit people read (MiB/GiB). It
does not know what a size is for (see ``settings`` for budgets and overrides).

Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal ones (KB, MB, GB, TB) powers of
1000, as on a GPU's box: "24GB" is 24e9 bytes, ~1.5 GiB less than "24GiB". A bare ``K``,
``M``, ``G`` or ``T`` is binary, as in ``free -h`` and llama.cpp's logs.
"""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}

_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)

#: What the error messages list as accepted.
ACCEPTED = "a number of bytes or a size such as 24GiB, 512MiB, 24GB"


def parse_size(value: object) -> int:
    """Bytes for ``value``: an int (bytes) or a string with a unit; ValueError otherwise."""
    if isinstance(value, bool):  # bool is an int to Python, never a size to a person
        raise ValueError(f"must be {ACCEPTED}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is not None and match["unit"].lower() in _UNITS:
            return int(float(match["number"]) * _UNITS[match["unit"].lower()])
    raise ValueError(f"must be {ACCEPTED}, got {value!r}")


def format_size(n_bytes: int | float) -> str:
    """``n_bytes`` in the largest binary unit that keeps it at or above 1: ``1.5 GiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
