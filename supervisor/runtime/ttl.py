"""How long a model stays loaded: the TTL rule, pure.

Owns the one spelling of "never unload" (``NEVER``), the TTL a model runs under (its own,
the default, or a client's ``keep_alive``), and the rule that says when an idle model
expires and when the TTL loop must wake. It performs no unload (``pool`` does) and reads no
pool (``views`` hands it ``Idle`` records).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final


class Never(enum.Enum):
    """The one value for "never unload" (a ttl of 0 in the config, a negative keep_alive)."""

    NEVER = "never"


NEVER: Final = Never.NEVER
#: Seconds a model stays loaded after its last request ends (0: unload at once), or NEVER.
Ttl = float | Never


def config_ttl(model_ttl: int | None, default_ttl: int) -> Ttl:
    """The config's TTL: the model's own, else ``default_ttl``; 0 means never unload."""
    seconds = model_ttl if model_ttl is not None else default_ttl
    return NEVER if seconds == 0 else float(seconds)


def keep_alive_ttl(seconds: float) -> Ttl:
    """A client's keep_alive (Ollama's meaning): negative keeps the model loaded for good, 0
    unloads it as soon as its last request ends, anything else is seconds after that."""
    return NEVER if seconds < 0 or math.isinf(seconds) else seconds


@dataclass(frozen=True)
class Idle:
    """What the TTL rule needs to know of one running model."""

    name: str
    in_flight: int
    last_used: float
    ttl: Ttl


def deadline(model: Idle) -> float:
    """When ``model`` unloads if nothing arrives (monotonic seconds); inf when never."""
    if model.in_flight or model.ttl is NEVER:
        return math.inf
    return model.last_used + model.ttl


def expired(models: Iterable[Idle], now: float) -> list[str]:
    """Models idle (nothing in flight) for at least their TTL since the last request ended."""
    return sorted(m.name for m in models if deadline(m) <= now)


def wakes_ttl_loop(last_used: float, ttl: Ttl, sleeping_until: float) -> bool:
    """Whether a model idle since ``last_used`` must wake the TTL loop sleeping until
    ``sleeping_until``: only when it would expire first."""
    return ttl is not NEVER and last_used + ttl < sleeping_until


def next_deadline(models: Iterable[Idle]) -> float:
    """When the next idle model's TTL runs out (monotonic seconds); inf when none will."""
    return min((deadline(m) for m in models), default=math.inf)


# -- how long corral itself stays up ------------------------------------------------------

#: idle_exit when it is unset and systemd passed the listening socket: systemd starts corral
#: again on the next connection, so staying up idle only holds memory.
ACTIVATED_IDLE_EXIT = 60.0


def idle_exit_after(setting: float | None, activated: bool) -> Ttl:
    """Seconds of nothing before corral exits, or NEVER: the setting (0: never); unset,
    ``ACTIVATED_IDLE_EXIT`` when socket-activated, else never (nothing would start it)."""
    if setting is None:
        return ACTIVATED_IDLE_EXIT if activated else NEVER
    return NEVER if setting == 0 else float(setting)


@dataclass(frozen=True)
class Activity:
    """What the idle-exit rule needs to know of the whole service."""

    #: Models with a child (starting, ready or stopping) or a load under way.
    children: int
    #: Client connections open, idle keep-alive ones and refused ones lingering included.
    connections: int
    #: Since when neither has been there (monotonic seconds): the later of the last
    #: connection's close, the last child's end, and the start.
    quiet_since: float


def exit_deadline(activity: Activity, after: Ttl) -> float:
    """When corral exits if nothing arrives (monotonic seconds); inf while anything runs or
    is connected (a request in flight holds its connection: it is never cut), or never."""
    if after is NEVER or activity.children or activity.connections:
        return math.inf
    return activity.quiet_since + after


def exits(activity: Activity, after: Ttl, now: float) -> bool:
    """Whether corral has been idle for ``after`` seconds and should exit now."""
    return exit_deadline(activity, after) <= now
