"""The scheduling decisions, as pure functions and tables: no processes, no sockets."""

from __future__ import annotations

import math

import pytest

from corral.generator.loader import validate
from corral.generator.settings import Config
from corral.supervisor.runtime.scheduler import (
    DEFAULT_GROUP,
    Placement,
    Resident,
    admits,
    admits_bytes,
    plan_load,
    plan_reload,
    shares_failure,
    sharing,
    to_evict,
)
from corral.supervisor.runtime.ttl import (
    NEVER,
    Idle,
    Ttl,
    config_ttl,
    expired,
    keep_alive_ttl,
    next_deadline,
    wakes_ttl_loop,
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
        Idle("forever", in_flight=0, last_used=0.0, ttl=NEVER),
    ]
    assert expired(models, now=100.0) == ["stale"]
    assert next_deadline(models) == 100.0
    assert expired(models, now=99.9) == []


def test_a_request_ending_wakes_the_ttl_loop_only_when_it_expires_first() -> None:
    assert wakes_ttl_loop(last_used=100.0, ttl=10, sleeping_until=math.inf)  # nothing idle
    assert wakes_ttl_loop(last_used=100.0, ttl=10, sleeping_until=200.0)  # sooner than that
    assert not wakes_ttl_loop(last_used=100.0, ttl=10, sleeping_until=105.0)  # wakes anyway
    assert not wakes_ttl_loop(last_used=100.0, ttl=NEVER, sleeping_until=math.inf)
    assert not wakes_ttl_loop(last_used=100.0, ttl=10, sleeping_until=-math.inf)  # deciding


def test_no_deadline_when_nothing_can_expire() -> None:
    assert next_deadline([Idle("x", in_flight=2, last_used=0, ttl=5)]) == math.inf
    assert next_deadline([]) == math.inf


@pytest.mark.parametrize(
    ("in_flight", "waiting", "concurrency", "max_queue", "admitted"),
    [(0, 0, 1, 0, True), (1, 0, 1, 0, False), (1, 0, 1, 1, True), (1, 1, 1, 1, False)],
)
def test_admission_counts_running_and_queued_requests(
    in_flight: int, waiting: int, concurrency: int, max_queue: int, admitted: bool
) -> None:
    assert admits(in_flight, waiting, concurrency, max_queue) is admitted


@pytest.mark.parametrize(
    ("held", "size", "limit", "admitted"),
    [
        (0, 10, 100, True),
        (90, 10, 100, True),
        (91, 10, 100, False),
        (0, 500, 100, True),  # the first to wait always may: max_body_bytes bounds it
        (1, 500, 100, False),
    ],
)
def test_admission_bounds_the_bytes_waiting_requests_hold(
    held: int, size: int, limit: int, admitted: bool
) -> None:
    assert admits_bytes(held, size, limit) is admitted


@pytest.mark.parametrize(
    ("failed_at", "arrived", "shared"),
    [(10.0, 9.0, True), (10.0, 10.0, True), (10.0, 11.0, False), (-math.inf, 0.0, False)],
)
def test_a_failed_load_is_shared_by_those_who_waited_for_it(
    failed_at: float, arrived: float, shared: bool
) -> None:
    assert shares_failure(failed_at, arrived) is shared


def test_presets_with_one_launch_key_share_a_child() -> None:
    keys = {"base": ("m.gguf", 4096), "pirate": ("m.gguf", 4096), "long": ("m.gguf", 8192)}
    assert sharing(("m.gguf", 4096), keys) == ["base", "pirate"]
    assert sharing(("other",), keys) == []


def resident(name: str, key: str | None = None, loading: bool = False) -> Resident:
    return Resident(ref=hash(name), name=name, key=key or name, loading=loading)


@pytest.mark.parametrize(
    ("residents", "wait_for", "evict"),
    [
        ([], [], []),
        ([resident("m0")], [], ["m0"]),
        # A load in progress owns its place: wait for it, and decide again then.
        ([resident("m0"), resident("m1", loading=True)], ["m1"], []),
        # The target's own child (a preset's key) is never in the way, loading or not.
        ([resident("m0", key="m2", loading=True)], [], []),
        ([resident("m1"), resident("m0")], [], ["m0", "m1"]),
    ],
)
def test_a_load_waits_for_loads_in_progress_and_evicts_the_rest(
    residents: list[Resident], wait_for: list[str], evict: list[str]
) -> None:
    plan = plan_load("m2", "m2", residents, placement())
    assert [r.name for r in plan.wait_for] == wait_for
    assert [r.name for r in plan.evict] == evict


@pytest.mark.parametrize(
    ("model_ttl", "default_ttl", "keep_alive", "ttl"),
    [
        (None, 300, None, 300.0),
        (5, 300, None, 5.0),
        (0, 300, None, NEVER),
        (None, 0, None, NEVER),
        (None, 300, -1.0, NEVER),
        (None, 300, math.inf, NEVER),
        (None, 0, 0.0, 0.0),  # keep_alive 0: unload as soon as the last request ends
        (None, 0, 30.0, 30.0),
    ],
)
def test_ttl_and_keep_alive_map_to_one_ttl_with_one_never(
    model_ttl: int | None, default_ttl: int, keep_alive: float | None, ttl: Ttl
) -> None:
    got = config_ttl(model_ttl, default_ttl) if keep_alive is None else keep_alive_ttl(keep_alive)
    assert got == ttl


def test_keep_alive_0_expires_at_once_and_never_does_not() -> None:
    models = [Idle("now", 0, 50.0, 0.0), Idle("never", 0, 0.0, NEVER)]
    assert expired(models, now=50.0) == ["now"]
    assert next_deadline(models) == 50.0


def models_config(**extra: object) -> Config:
    models = [{"name": "a", "path": "a.gguf"}, {"name": "b", "path": "b.gguf"}]
    return validate({"models": models, **extra})  # ``models`` in extra replaces these


@pytest.mark.parametrize(
    ("new", "keep", "restart"),
    [
        (models_config(), {"a", "b"}, ()),
        (validate({"models": [{"name": "a", "path": "a.gguf"}]}), {"a"}, ()),
        (
            validate(
                {"models": [{"name": "a", "path": "x.gguf"}, {"name": "b", "path": "b.gguf"}]}
            ),
            {"b"},
            (),
        ),
        (models_config(health_timeout=5), set(), ()),
        (models_config(port=9000, host="0.0.0.0"), {"a", "b"}, ("host", "port")),
        # Limits and keys are read per request: a reload applies them.
        (models_config(max_body_bytes=10, api_keys=["k"], client_timeout=1), {"a", "b"}, ()),
    ],
)
def test_plan_reload_keeps_unchanged_models_and_names_what_needs_a_restart(
    new: Config, keep: set[str], restart: tuple[str, ...]
) -> None:
    plan = plan_reload(models_config(), new)
    assert plan.keep == keep and plan.restart == restart
