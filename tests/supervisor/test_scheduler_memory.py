"""``scheduler.plan_load`` with memory budgets in force, as tables: what fits runs together,
idle models go least recently used first, busy ones are waited for (until the bounded wait
runs out), persistent ones stay, groups still apply, and what can never fit is refused."""

from __future__ import annotations

from typing import Any

import pytest

from corral.generator.loader import validate
from corral.supervisor.runtime.scheduler import (
    Budget,
    LoadPlan,
    Placement,
    Resident,
    plan_load,
    plan_retry,
)

GIB = 1024**3


def placement(groups: dict[str, Any] | None = None) -> Placement:
    raw = {"models": [{"name": n, "path": f"{n}.gguf"} for n in "abcdt"], "groups": groups or {}}
    return Placement.from_config(validate(raw), by_memory=True)


def r(name: str, gib: float = 1, **kw: Any) -> Resident:
    """A resident on the CPU holding ``gib``; ``pending`` requests, ``last_used``…"""
    memory = kw.pop("memory", {"cpu": int(gib * GIB)})
    return Resident(ord(name[0]), name, kw.pop("key", name), memory=memory, **kw)


def names(plan: LoadPlan) -> dict[str, Any]:
    return {
        "wait_for": [x.name for x in plan.wait_for],
        "evict": [x.name for x in plan.evict],
        "busy": [x.name for x in plan.busy],
        "refuse": plan.refuse is not None,
    }


def plan(
    residents: list[Resident],
    budget_gib: float = 4,
    need_gib: float = 2,
    groups: dict[str, Any] | None = None,
    swap_now: bool = False,
) -> dict[str, Any]:
    memory = Budget({"cpu": int(need_gib * GIB)}, {"cpu": int(budget_gib * GIB)})
    return names(plan_load("t", "t", residents, placement(groups), memory, swap_now))


NONE: dict[str, Any] = {"wait_for": [], "evict": [], "busy": [], "refuse": False}


@pytest.mark.parametrize(
    ("why", "residents", "budget", "expected"),
    [
        ("fits beside both", [r("a"), r("b")], 4, {}),
        ("oldest idle goes first", [r("a", last_used=2), r("b", last_used=1)], 3, {"evict": ["b"]}),
        (
            "as many as it takes, oldest first",
            [r("a", last_used=3), r("b", last_used=1), r("c", last_used=2)],
            3,
            {"evict": ["b", "c"]},
        ),
        (
            "a busy model is waited for",
            [r("a", pending=1), r("b", pending=2)],
            3,
            {"busy": ["a", "b"]},
        ),
        (
            "an idle one goes before a busy one waits",
            [r("a", pending=1), r("b")],
            3,
            {"evict": ["b"]},
        ),
        ("a load in progress is waited for", [r("a", loading=True)], 2.5, {"wait_for": ["a"]}),
        ("never fits, even alone", [], 1.5, {"refuse": True}),
    ],
)
def test_memory_decides_who_stays(
    why: str, residents: list[Resident], budget: float, expected: dict[str, Any]
) -> None:
    assert plan(residents, budget) == {**NONE, **expected}, why


def test_the_bounded_wait_ran_out_so_busy_models_drain_and_go() -> None:
    residents = [r("a", pending=1, last_used=5), r("b", pending=3, last_used=1)]
    assert plan(residents, 3, swap_now=True) == {**NONE, "evict": ["b"]}
    assert plan(residents, 3, swap_now=False) == {**NONE, "busy": ["a", "b"]}


def test_persistent_models_are_never_evicted_and_named_in_a_refusal() -> None:
    groups = {"pinned": {"members": ["a"], "persistent": True, "swap": False, "exclusive": False}}
    assert plan([r("a", 2), r("b", 1)], 4, groups=groups) == {**NONE, "evict": ["b"]}
    assert plan([r("a", 3)], 4, groups=groups) == {**NONE, "refuse": True}
    memory = Budget({"cpu": 2 * GIB}, {"cpu": 4 * GIB})
    refused = plan_load("t", "t", [r("a", 3)], placement(groups), memory).refuse
    assert refused == (
        "model 't' cannot load: needs 2.0 GiB on cpu, whose budget is 4.0 GiB, "
        "of which persistent models hold a (3.0 GiB)"
    )


def test_groups_still_apply_whatever_the_memory() -> None:
    swap = {"pair": {"members": ["a", "t"], "swap": True, "exclusive": False}}
    assert plan([r("a"), r("b")], 64, groups=swap) == {**NONE, "evict": ["a"]}
    # A group's busy member drains as before; memory does not make it wait.
    assert plan([r("a", pending=1)], 64, groups=swap) == {**NONE, "evict": ["a"]}


def test_presets_on_one_child_count_once_and_go_together() -> None:
    presets = [r("a", 2, key="k", last_used=1), r("b", 2, key="k", last_used=9)]
    assert plan(presets, 4.5) == NONE  # 2 GiB once, not twice
    assert plan(presets, 3) == {**NONE, "evict": ["a", "b"]}
    assert plan([r("a", 2, key="t")], 2.5) == NONE  # the target's own child


def test_partial_offload_frees_only_the_device_that_is_short() -> None:
    gpu_only = r("a", memory={"gpu0": 6 * GIB}, last_used=1)
    cpu_only = r("b", memory={"cpu": 6 * GIB}, last_used=0)
    memory = Budget({"gpu0": 4 * GIB, "cpu": 1 * GIB}, {"gpu0": 8 * GIB, "cpu": 64 * GIB})
    got = plan_load("t", "t", [gpu_only, cpu_only], placement(), memory)
    assert names(got) == {**NONE, "evict": ["a"]}


def test_without_budgets_models_outside_groups_run_one_at_a_time() -> None:
    one_at_a_time = Placement.from_config(validate({"models": [{"name": "t", "path": "t.gguf"}]}))
    assert names(plan_load("t", "t", [r("a")], one_at_a_time)) == {**NONE, "evict": ["a"]}
    assert names(plan_load("t", "t", [r("a")], placement())) == NONE


def test_after_out_of_memory_every_idle_model_on_the_device_goes() -> None:
    residents = [r("a"), r("b", pending=1), r("c", memory={"gpu0": GIB}), r("d", loading=True)]
    again = plan_retry("t", "t", residents, placement(), ["cpu"])
    assert again is not None and [x.name for x in again] == ["a"]
    assert plan_retry("t", "t", [r("b", pending=1)], placement(), ["cpu"]) is None
