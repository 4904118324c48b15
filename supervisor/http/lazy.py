"""Importing a heavy library on its first use, not at start.

Owns ``module``: the stdlib's ``importlib.util.LazyLoader`` registered under the library's
name, so that ``import`` statements and attribute reads work as usual, and the module runs
only when an attribute is first read. The peers' client library cost every start its
import (aiohttp ~120 ms, measured), which a socket-activated corral pays on the request
that started it. Type checkers see the
real module (``TYPE_CHECKING`` imports beside each use).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """``name``, imported now if it already is, else on its first attribute read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    found = importlib.util.module_from_spec(spec)
    sys.modules[name] = found
    loader.exec_module(found)
    return found
