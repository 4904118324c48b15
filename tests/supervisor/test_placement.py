"""The memory policy, as tables: who is admitted, evicted, waited for or refused."""

from __future__ import annotations

import pytest

from corral.supervisor.runtime.memory.placement import (
    Admit,
    Decision,
    Refuse,
    Resident,
    Wait,
    after_out_of_memory,
    may_join,
    place,
    take_turn,
)

G = 1024**3


def gpu(gib: float) -> dict[str, int]:
    return {"gpu0": int(gib * G)}


def res(name: str, gib: float, *, used: float = 0, busy: int = 0, pinned: bool = False) -> Resident:
    return Resident(name=name, memory=gpu(gib), in_flight=busy, last_used=used, persistent=pinned)


BUDGET = gpu(24)  # the README's RTX 3090

CASES: list[tuple[str, dict[str, int], list[Resident], list[str], Decision]] = [
    ("empty device: admit", gpu(20), [], [], Admit()),
    ("fits beside both: no swap", gpu(4), [res("a", 8), res("b", 10)], [], Admit()),
    (
        "LRU first: the older idle model goes",
        gpu(10),
        [res("old", 8, used=1), res("new", 8, used=5)],
        [],
        Admit(evict=("old",)),
    ),
    (
        "as many as needed, oldest first",
        gpu(20),
        [res("c", 8, used=3), res("a", 8, used=1), res("b", 8, used=2)],
        [],
        Admit(evict=("a", "b", "c")),
    ),
    (
        "in flight is never evicted: the idle one goes instead",
        gpu(10),
        [res("busy", 8, used=0, busy=2), res("idle", 8, used=9)],
        [],
        Admit(evict=("idle",)),
    ),
    (
        "only busy models stand in the way: wait",
        gpu(16),
        [res("busy", 16, busy=1), res("idle", 2, used=1)],
        [],
        Wait(blockers=("busy",)),
    ),
    (
        "pinned is never evicted: the unpinned idle one goes",
        gpu(12),
        [res("pinned", 10, used=0, pinned=True), res("other", 8, used=5)],
        [],
        Admit(evict=("other",)),
    ),
    (
        "pinned models leave too little: refuse, naming them",
        gpu(16),
        [res("embed", 10, pinned=True)],
        [],
        Refuse(device="gpu0", needed=16 * G, budget=24 * G, holders={"embed": 10 * G}),
    ),
    (
        "cannot fit even on an empty device: refuse",
        gpu(30),
        [],
        [],
        Refuse(device="gpu0", needed=30 * G, budget=24 * G),
    ),
    (
        "groups apply on top: their evictions stand even when memory would fit",
        gpu(2),
        [res("sibling", 4, used=9), res("other", 4)],
        ["sibling"],
        Admit(evict=("sibling",)),
    ),
    (
        "group evictions free memory before any LRU choice",
        gpu(14),
        [res("sibling", 10, used=9), res("lru", 8, used=0)],
        ["sibling"],
        Admit(evict=("sibling",)),
    ),
    (
        "an idle model that holds nothing where memory is short is left alone",
        {"gpu0": 20 * G},
        [
            Resident("cpu-only", {"cpu": 8 * G}, last_used=0),
            res("gpu-user", 8, used=5),
        ],
        [],
        Admit(evict=("gpu-user",)),
    ),
]


@pytest.mark.parametrize(
    ("need", "residents", "group_evict", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_place(
    need: dict[str, int], residents: list[Resident], group_evict: list[str], expected: Decision
) -> None:
    assert place("target", need, BUDGET, residents, group_evict) == expected


PARTIAL_BUDGETS = {"gpu0": 24 * G, "cpu": 32 * G}
# A 32B model with 35 of 65 layers on the GPU: its estimate split between the two.
PARTIAL_NEED = {"gpu0": 10 * G, "cpu": 10 * G}

PARTIAL_CASES: list[tuple[str, list[Resident], Decision]] = [
    (
        "both halves fit",
        [Resident("coder", {"gpu0": 12 * G, "cpu": 1 * G})],
        Admit(),
    ),
    (
        "GPU half short: the GPU holder goes",
        [Resident("coder", {"gpu0": 16 * G}, last_used=1), Resident("ram", {"cpu": 8 * G})],
        Admit(evict=("coder",)),
    ),
    (
        "CPU half short: the RAM holder goes, not the GPU one",
        [
            Resident("ram", {"cpu": 25 * G}, last_used=9),
            Resident("coder", {"gpu0": 4 * G}, last_used=1),
        ],
        Admit(evict=("ram",)),
    ),
    (
        "CPU half short and its holder busy: wait for it",
        [Resident("ram", {"cpu": 25 * G}, in_flight=1)],
        Wait(blockers=("ram",)),
    ),
]


@pytest.mark.parametrize(
    ("residents", "expected"),
    [case[1:] for case in PARTIAL_CASES],
    ids=[case[0] for case in PARTIAL_CASES],
)
def test_partial_offload_is_placed_on_both_devices(
    residents: list[Resident], expected: Decision
) -> None:
    assert place("big", PARTIAL_NEED, PARTIAL_BUDGETS, residents) == expected


def test_a_device_without_a_budget_does_not_limit() -> None:
    assert place("m", {"gpu1": 99 * G}, BUDGET, [res("a", 20)]) == Admit()


def test_the_target_itself_is_not_counted_against_it() -> None:
    assert place("a", gpu(20), BUDGET, [res("a", 20)]) == Admit()


def test_refusal_reads_with_figures() -> None:
    refusal = Refuse(device="gpu0", needed=30 * G, budget=24 * G, holders={"embed": G // 2})
    assert refusal.message == (
        "needs 30.0 GiB on gpu0, whose budget is 24.0 GiB, "
        "of which persistent models hold embed (512.0 MiB)"
    )


OOM_CASES = [
    ("first failure: stop every idle model there", False, Admit(evict=("a", "b"))),
    ("the retry failed too: give up", True, None),
]


@pytest.mark.parametrize(
    ("retried", "expected"), [c[1:] for c in OOM_CASES], ids=[c[0] for c in OOM_CASES]
)
def test_out_of_memory_evicts_more_and_retries_once(retried: bool, expected: Admit | None) -> None:
    residents = [
        res("b", 2, used=5),
        res("a", 2, used=1),
        res("busy", 2, busy=1),
        res("pinned", 2, pinned=True),
        Resident("elsewhere", {"cpu": G}),
    ]
    assert after_out_of_memory("t", residents, ["gpu0"], retried) == expected


def test_out_of_memory_with_nothing_left_to_stop_gives_up() -> None:
    assert after_out_of_memory("t", [res("busy", 2, busy=1)], ["gpu0"], retried=False) is None


# now, since, pending, max_wait -> swap, recheck_at
TURNS = [
    ("the loaded model has nothing pending: swap now", 100.0, 99.0, 0, 10.0, True, 100.0),
    ("pending work, wait not over: keep serving", 100.0, 95.0, 3, 10.0, False, 105.0),
    (
        "the wait reached its bound: swap, so the other side never starves",
        105.0,
        95.0,
        3,
        10.0,
        True,
        105.0,
    ),
    ("max_swap_wait 0: swap as soon as it may", 100.0, 100.0, 3, 0.0, True, 100.0),
]


@pytest.mark.parametrize(
    ("now", "since", "pending", "max_wait", "swap", "recheck"),
    [t[1:] for t in TURNS],
    ids=[t[0] for t in TURNS],
)
def test_bounded_wait_before_a_swap(
    now: float, since: float, pending: int, max_wait: float, swap: bool, recheck: float
) -> None:
    turn = take_turn(now, since, pending, max_wait)
    assert (turn.swap, turn.recheck_at) == (swap, recheck)


def test_new_requests_join_the_loaded_model_only_within_the_bound() -> None:
    assert may_join(100.0, None, 10.0)
    assert may_join(104.0, 95.0, 10.0)
    assert not may_join(105.0, 95.0, 10.0)
    assert not may_join(100.0, 100.0, 0.0)
