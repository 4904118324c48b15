"""The scheduling decisions, as pure functions: no processes, no sockets."""

from __future__ import annotations

import math

from corral.generator.loader import validate
from corral.supervisor.runtime.scheduler import (
    DEFAULT_GROUP,
    Idle,
    Placement,
    expired,
    next_deadline,
    to_evict,
)


def placement(groups: dict[str, dict[str, object]] | None = None, models: int = 4) -> Placement:
    raw = {
        "models": [{"name": f"m{i}", "path": f"m{i}.gguf"} for i in range(models)],
        "groups": groups or {},
    }
    return Placement.from_config(validate(raw))


def test_without_groups_one_model_runs_at_a_time() -> None:
    p = placement()
    assert p.group("m0") == DEFAULT_GROUP
    assert to_evict("m1", ["m0"], p) == ["m0"]
    assert to_evict("m0", ["m0"], p) == []
    assert to_evict("m0", [], p) == []


def test_swap_group_holds_one_member_and_leaves_others_when_not_exclusive() -> None:
    p = placement({"small": {"members": ["m0", "m1"], "swap": True, "exclusive": False}})
    assert to_evict("m1", ["m0", "m2"], p) == ["m0"]


def test_non_swap_group_members_run_together() -> None:
    p = placement({"pair": {"members": ["m0", "m1"], "swap": False, "exclusive": False}})
    assert to_evict("m1", ["m0"], p) == []


def test_exclusive_group_stops_other_groups_but_not_persistent_ones() -> None:
    p = placement(
        {
            "main": {"members": ["m0", "m1"], "swap": True, "exclusive": True},
            "embed": {"members": ["m2"], "persistent": True},
        }
    )
    # m3 sits in the default group; m2 is persistent and survives.
    assert to_evict("m0", ["m1", "m2", "m3"], p) == ["m1", "m3"]


def test_model_group_key_places_it_like_members() -> None:
    raw = {
        "models": [
            {"name": "a", "path": "a.gguf", "group": "g"},
            {"name": "b", "path": "b.gguf", "group": "g"},
            {"name": "c", "path": "c.gguf"},
        ],
        "groups": {"g": {"swap": False, "exclusive": False}},
    }
    p = Placement.from_config(validate(raw))
    assert p.group("a") == "g" == p.group("b")
    assert to_evict("b", ["a", "c"], p) == []
    assert to_evict("c", ["a", "b"], p) == ["a", "b"]


def test_ttl_counts_idle_time_since_the_last_request_ended() -> None:
    models = [
        Idle("busy", in_flight=1, last_used=0.0, ttl=10),
        Idle("fresh", in_flight=0, last_used=95.0, ttl=10),
        Idle("stale", in_flight=0, last_used=90.0, ttl=10),
        Idle("forever", in_flight=0, last_used=0.0, ttl=0),
    ]
    assert expired(models, now=100.0) == ["stale"]
    assert next_deadline(models) == 100.0
    assert expired(models, now=99.9) == []


def test_no_deadline_when_nothing_can_expire() -> None:
    assert next_deadline([Idle("x", in_flight=2, last_used=0, ttl=5)]) == math.inf
    assert next_deadline([]) == math.inf
