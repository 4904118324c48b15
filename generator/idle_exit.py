"""What a config means for ``idle_exit``: the models that keep corral up.

Owns the reading of the config that ``corral check`` and ``corral serve`` both say aloud: a
preloaded model that never unloads (ttl 0) keeps corral up for good, so idle_exit can never
fire; any model that never unloads stops it from firing once that model has loaded; and a
preloaded model with a TTL loads again at every start. The rule that decides the exit itself
is the supervisor's (``runtime.ttl``); this reads only the config.
"""

from __future__ import annotations

from corral.generator.settings import Config


def notes(config: Config) -> list[str]:
    """One line per way the models defeat ``idle_exit``; empty when nothing does, or when
    idle_exit is 0 (never)."""
    if config.idle_exit == 0:
        return []
    setting = (
        f"idle_exit ({config.idle_exit:g} s)"
        if config.idle_exit is not None
        else "idle_exit (60 s when socket-activated)"
    )
    never = [m for m in config.models if _ttl(m.ttl, config.default_ttl) == 0]
    kept = [m.name for m in never if m.preload]
    later = [m.name for m in never if not m.preload]
    reloaded = [m.name for m in config.models if m.preload and m.name not in kept]
    found = []
    if kept:
        found.append(
            f"{setting} can never fire: preloaded with ttl 0 (never unloaded): "
            f"{', '.join(kept)}; corral stays up. Give them a ttl, or drop preload"
        )
    if later:
        found.append(
            f"{setting} stops firing once one of these has loaded, as ttl 0 never unloads "
            f"it: {', '.join(later)}. Give it a ttl"
        )
    if reloaded:
        found.append(
            f"preloaded, so loaded again at every start: {', '.join(reloaded)}; with "
            f"{setting}, the first request after each exit also waits for that load"
        )
    return found


def _ttl(model_ttl: int | None, default_ttl: int) -> int:
    return model_ttl if model_ttl is not None else default_ttl
