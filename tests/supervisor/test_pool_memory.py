"""``Pool`` under a memory budget, with fake children and declared memory: what fits runs
together, the least recently used idle model goes, busy ones are waited for (bounded by
``max_swap_wait``), what never fits is refused before anything starts, an out-of-memory load
evicts more and tries once more, and a ready child's buffer lines are learned."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from corral.generator.loader import validate
from corral.generator.settings import Config
from corral.supervisor.errors import StartFailed
from corral.supervisor.runtime import views
from corral.supervisor.runtime.pool import Pool
from tests.supervisor.fake_child import World
from tests.support import until

GIB = 1024**3


def config(tmp_path: Path, budget: str, *models: tuple[str, str | None], **extra: Any) -> Config:
    """Models by (name, declared memory), under one CPU budget with no margin."""
    return validate(
        {
            "devices": {"cpu": {"memory": budget}},
            "memory_margin": 0,
            "state_dir": str(tmp_path / "state"),
            "models": [
                {"name": n, "path": f"{n}.gguf", **({"memory": m} if m else {})} for n, m in models
            ],
            **extra,
        }
    )


async def use(pool: Pool, name: str) -> None:
    async with pool.lease(name):
        pass


def running(pool: Pool) -> list[str]:
    return sorted(e.name for e in pool.entries.values() if e.running())


async def test_a_budget_that_fits_both_runs_both_without_a_swap(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "2GiB", ("a", "1GiB"), ("b", "1GiB")))
    for name in "abab":
        await use(pool, name)
    assert world.events == ["start a", "start b"]
    assert running(pool) == ["a", "b"] and world.most_up == 2


async def test_a_budget_for_two_evicts_the_least_recently_used(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "2GiB", ("a", "1GiB"), ("b", "1GiB"), ("c", "1GiB")))
    for name in "aba":  # b is now the least recently used
        await use(pool, name)
    await use(pool, "c")
    assert world.events == ["start a", "start b", "stop reason=swap b", "start c"]
    assert running(pool) == ["a", "c"] and world.most_up == 2


async def test_a_busy_model_is_waited_for_never_cut_off(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "1GiB", ("a", "1GiB"), ("b", "1GiB")))
    held = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with pool.lease("a"):
            held.set()
            await done.wait()

    a = asyncio.create_task(hold())
    await held.wait()
    b = asyncio.create_task(use(pool, "b"))
    await until(lambda: pool.entries["b"].load_task is not None, 1, "b's load to start")
    await asyncio.sleep(0.05)  # b's load has had time to decide: it must still be waiting
    assert not b.done() and "start b" not in world.events and not pool.entries["a"].draining
    # Within the bound, a new request for the loaded model is still served by it.
    await asyncio.wait_for(use(pool, "a"), 1)
    done.set()
    await asyncio.wait_for(asyncio.gather(a, b), 2)
    assert world.events == ["start a", "stop reason=swap a", "start b"]
    assert world.most_up == 1


async def test_the_bounded_wait_drains_a_busy_model_when_it_runs_out(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    cfg = config(tmp_path, "1GiB", ("a", "1GiB"), ("b", "1GiB"), max_swap_wait=0.1)
    pool = make_pool(cfg)
    held = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with pool.lease("a"):
            held.set()
            await done.wait()

    a = asyncio.create_task(hold())
    await held.wait()
    b = asyncio.create_task(use(pool, "b"))
    # After max_swap_wait, a drains: no new request gets in, the one in flight finishes.
    await until(lambda: pool.entries["a"].draining, 2, "a to drain once the wait ran out")
    assert "start b" not in world.events
    done.set()
    await asyncio.wait_for(asyncio.gather(a, b), 2)
    assert world.events == ["start a", "stop reason=swap a", "start b"]


async def test_a_model_that_can_never_fit_is_refused_with_figures_before_any_start(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "1GiB", ("big", "3GiB")))
    with pytest.raises(StartFailed) as refused:
        await use(pool, "big")
    assert refused.value.status == 503
    assert refused.value.message == (
        "model 'big' cannot load: needs 3.0 GiB on cpu, whose budget is 1.0 GiB"
    )
    assert world.made == []


async def test_persistent_models_stay_and_are_named_when_nothing_else_fits(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    groups = {"pinned": {"members": ["a"], "persistent": True, "swap": False, "exclusive": False}}
    cfg = config(tmp_path, "2GiB", ("a", "1GiB"), ("b", "1GiB"), ("c", "2GiB"), groups=groups)
    pool = make_pool(cfg)
    await use(pool, "a")
    await use(pool, "b")
    with pytest.raises(StartFailed, match=r"persistent models hold a \(1.0 GiB\)"):
        await use(pool, "c")
    assert running(pool) == ["a", "b"]


async def test_an_out_of_memory_load_evicts_more_and_tries_once_more(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    # The declared figures say all three fit; c's load fails while more than one other is up.
    pool = make_pool(config(tmp_path, "3GiB", ("a", "1GiB"), ("b", "1GiB"), ("c", "1GiB")))
    world.out_of_memory = {"c": 1}
    await use(pool, "a")
    await use(pool, "b")
    await use(pool, "c")
    assert world.events[:3] == ["start a", "start b", "start c"]
    assert world.events[3] == "oom c"
    assert sorted(world.events[4:6]) == [
        "stop reason=out of memory a",
        "stop reason=out of memory b",
    ]
    assert world.events[6:] == ["start c"]
    assert running(pool) == ["c"]


async def test_an_out_of_memory_retry_happens_only_once(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "3GiB", ("a", "1GiB"), ("c", "1GiB")))
    world.out_of_memory = {"c": -1}  # fails whatever is up
    await use(pool, "a")
    with pytest.raises(StartFailed, match="out of memory"):
        await use(pool, "c")
    assert world.events.count("oom c") == 2


async def test_a_load_killed_by_sigkill_counts_as_out_of_memory_but_a_plain_failure_does_not(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "3GiB", ("a", "1GiB"), ("b", "1GiB"), ("c", "1GiB")))
    await use(pool, "a")
    world.killed = {"c"}
    with pytest.raises(StartFailed, match="code -9"):
        await use(pool, "c")
    assert "stop reason=out of memory a" in world.events and world.events.count("killed c") == 2
    await use(pool, "b")
    world.failing = {"a"}  # no memory in the log, exit code 1: nothing else is stopped
    with pytest.raises(StartFailed, match="no such file"):
        await use(pool, "a")
    assert running(pool) == ["b"] and world.events.count("fail a") == 1


async def test_a_ready_childs_buffer_lines_become_its_measured_figure(
    make_pool: Any, world: World, tmp_path: Path
) -> None:
    pool = make_pool(config(tmp_path, "4GiB", ("a", None)))
    world.buffer_lines["a"] = [
        "load_tensors:   CPU_Mapped model buffer size =   235.00 MiB",
        "llama_kv_cache:        CPU KV buffer size =    12.00 MiB",
    ]
    assert views.memory(pool, pool.entries["a"]) is None  # no file: nothing to estimate
    await use(pool, "a")
    shown = views.describe(pool, pool.entries["a"])["memory"]
    assert shown == {
        "bytes": 247 * 1024**2,
        "by_device": {"cpu": 247 * 1024**2},
        "source": "measured",
    }
    kept = json.loads((tmp_path / "state" / "measured.json").read_text())
    assert list(kept["models"].values()) == [{"cpu": 247 * 1024**2}]
