"""Reading a client's ``keep_alive``: how long its model stays loaded after the request.

Owns the value's grammar, Ollama's: a number of seconds (``300``, ``"300"``), a Go duration
(``"30s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``), ``0`` to unload as soon as the request ends,
and any negative value (``-1``, ``"-1m"``) to keep the model loaded for good. It returns
seconds in that grammar (forever as -1), which ``Pool.set_keep_alive`` turns into the
``ttl.Ttl`` (``ttl.keep_alive_ttl``), or a 400 that names the field and the bad
value. Pure: it neither applies the value (the ``api`` routes hand it to the pool) nor knows
models.
"""

from __future__ import annotations

import math
import re
from collections.abc import MutableMapping
from typing import Any

from corral.supervisor.errors import BadRequest

#: Seconds per unit of Go's time.ParseDuration, which Ollama uses for string values.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

FIELD = "keep_alive"
ALLOWED = (
    'a duration such as "30s", "5m" or "1h", a number of seconds, '
    "0 to unload after this request, or a negative value to keep the model loaded"
)


#: Longer than this is "forever": about a century, in seconds.
FOREVER_AFTER = 100 * 365 * 24 * 3600.0


def parse(value: object, where: str = FIELD) -> float:
    """Seconds to keep the model loaded: 0 = unload when idle, negative = never unload."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad(value, where)
    if isinstance(value, str):
        seconds = _from_text(value.strip())
        if seconds is None:
            raise _bad(value, where)
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond a float: JSON allows it
            raise _bad(value, where) from None
    if math.isnan(seconds):
        raise _bad(value, where)
    # Any negative means "forever", and so does anything beyond a century (no clock or date
    # type downstream can hold 1e308 s); one spelling keeps comparisons and logs simple.
    return -1.0 if seconds < 0 or seconds > FOREVER_AFTER else seconds


def take(body: MutableMapping[str, Any], where: str = FIELD) -> float | None:
    """Remove ``keep_alive`` from a request body and parse it; None when absent or null.

    Removed so that an upstream that validates its fields never sees a key it does not know.
    """
    if FIELD not in body:
        return None
    value = body.pop(FIELD)
    return None if value is None else parse(value, where)


def _from_text(text: str) -> float | None:
    if _NUMBER.fullmatch(text):
        return float(text)  # Ollama reads a bare number in a string as seconds too
    sign = 1.0
    if text.startswith(("+", "-")):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return sign * total


def _bad(value: object, where: str) -> BadRequest:
    shown = repr(value) if isinstance(value, str) else _json_text(value)
    return BadRequest(f"{where}: must be {ALLOWED}; got {shown}")


def _json_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)
