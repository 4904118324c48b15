"""``Pool`` in-process, with fake children (``fake_child``): swaps, TTLs, reloads, crashes and
hang-ups in milliseconds. A held lease plays a generation in progress."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from corral.generator.loader import validate
from corral.generator.settings import Config
from corral.supervisor.errors import Overloaded, StartFailed
from corral.supervisor.runtime import scheduler, views
from corral.supervisor.runtime.pool import Pool
from tests.supervisor.fake_child import World
from tests.support import until


def config(*names: str, **extra: Any) -> Config:
    models = [{"name": n, "path": f"{n}.gguf"} for n in names]
    return validate({"models": models, **extra})


class Holder:
    """A request holding its place on a model until ``done`` (a generation in progress)."""

    def __init__(self, pool: Pool, name: str) -> None:
        self.pool, self.name = pool, name
        self.leased = asyncio.Event()
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self._hold())

    async def _hold(self) -> None:
        async with self.pool.lease(self.name):
            self.leased.set()
            await self.done.wait()

    async def finish(self) -> None:
        self.done.set()
        await self.task


async def use(pool: Pool, name: str) -> None:
    async with pool.lease(name):
        pass


def running(pool: Pool) -> list[str]:
    return sorted(e.name for e in pool.entries.values() if e.running())


async def test_a_swap_lets_the_generation_finish_then_stops_before_starting(
    make_pool: Any, world: World
) -> None:
    pool = make_pool(config("a", "b"))
    a = Holder(pool, "a")
    await a.leased.wait()
    b = asyncio.create_task(use(pool, "b"))
    await until(lambda: pool.entries["a"].draining, 1, "a to drain for b")
    assert not b.done() and "start b" not in world.events
    await a.finish()
    await asyncio.wait_for(b, 1)
    assert world.events == ["start a", "stop reason=swap a", "start b"]
    assert world.most_up == 1 and running(pool) == ["b"]


async def test_a_waiter_hanging_up_during_a_load_keeps_one_model_at_a_time(
    make_pool: Any, world: World
) -> None:
    """Bug 7: the load owns the decision until it ends, not the request that waits for it."""
    pool = make_pool(config("a", "b", "c"))
    a = Holder(pool, "a")
    await a.leased.wait()
    b = Holder(pool, "b")
    await until(lambda: pool.entries["a"].draining, 1, "b's load to drain a")
    b.task.cancel()  # b's client hangs up while its model loads
    c = Holder(pool, "c")
    await asyncio.sleep(0.02)
    await a.finish()
    await asyncio.wait_for(c.leased.wait(), 2)
    assert world.most_up == 1, world.events
    assert running(pool) == ["c"]
    await c.finish()


async def test_hang_ups_in_a_storm_never_run_two_models_at_once(
    make_pool: Any, world: World
) -> None:
    pool = make_pool(config("a", "b", "c"))
    world.load_seconds = {"a": 0.01, "b": 0.02, "c": 0.015}
    rng = random.Random(7)

    async def request(name: str, hold: float) -> None:
        async with pool.lease(name):
            await asyncio.sleep(hold)

    tasks = []
    for _ in range(120):
        task = asyncio.create_task(request(rng.choice("abc"), rng.uniform(0, 0.02)))
        tasks.append(task)
        if rng.random() < 0.3:  # this client hangs up, at some point of its request
            asyncio.get_running_loop().call_later(rng.uniform(0, 0.03), task.cancel)
        await asyncio.sleep(rng.uniform(0, 0.004))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert world.most_up == 1, world.events


async def test_unloading_one_model_does_not_hold_up_loading_an_unrelated_one(
    make_pool: Any, world: World
) -> None:
    """Bug 3: the drain of ``a`` must not run under a lock that ``b``'s load needs."""
    groups = {
        "left": {"members": ["a"], "exclusive": False},
        "right": {"members": ["b"], "exclusive": False},
    }
    pool = make_pool(config("a", "b", groups=groups))
    a = Holder(pool, "a")
    await a.leased.wait()
    unloading = asyncio.create_task(pool.unload("a"))
    await until(lambda: pool.entries["a"].draining, 1, "the unload to drain a")
    await asyncio.wait_for(use(pool, "b"), 1)
    assert not unloading.done(), "a's generation is still running"
    await a.finish()
    assert await unloading == ["a"]
    assert running(pool) == ["b"]


async def test_a_reload_draining_a_changed_model_does_not_hold_up_others(
    make_pool: Any, world: World
) -> None:
    groups = {"all": {"members": ["a", "b"], "swap": False}}
    old = config("a", "b", groups=groups)
    pool = make_pool(old)
    a = Holder(pool, "a")
    await a.leased.wait()
    models = [{"name": "a", "path": "changed.gguf"}, {"name": "b", "path": "b.gguf"}]
    new = validate({"models": models, "groups": groups})
    reloading = asyncio.create_task(pool.reload(new, scheduler.plan_reload(old, new)))
    await asyncio.wait_for(use(pool, "b"), 1)
    assert not reloading.done()
    await a.finish()
    await asyncio.wait_for(reloading, 1)
    assert "stop reason=reload a" in world.events


async def test_a_reloaded_entry_of_the_same_file_waits_for_its_old_child_to_stop(
    make_pool: Any, world: World
) -> None:
    """Only the defaults changed: the launch key is the same, yet the old child retires with
    its entry, and the new one must not start beside it."""
    old = config("a")
    pool = make_pool(old)
    a = Holder(pool, "a")
    await a.leased.wait()
    new = validate({"models": [{"name": "a", "path": "a.gguf", "parameters": {"top_k": 5}}]})
    reloading = asyncio.create_task(pool.reload(new, scheduler.plan_reload(old, new)))
    again = asyncio.create_task(use(pool, "a"))
    await asyncio.sleep(0.02)
    assert not again.done(), "the new entry waits for the old child's requests"
    await a.finish()
    await asyncio.wait_for(asyncio.gather(reloading, again), 1)
    assert world.events == ["start a", "stop reason=reload a", "start a"]
    assert world.most_up == 1


async def test_never_unload_has_one_spelling(make_pool: Any) -> None:
    """Bug 5: a ttl of 0 (never) and a keep_alive of -1 (forever) read the same."""
    groups = {"all": {"members": ["by_config", "by_client"], "swap": False}}
    pool = make_pool(config("by_config", "by_client", groups=groups, default_ttl=0))
    await use(pool, "by_config")
    async with pool.lease("by_client"):
        pool.set_keep_alive(pool.entries["by_client"], -1)
    shown = [views.describe(pool, e) for e in pool.entries.values()]
    assert [(d["ttl"], d["expires_at"]) for d in shown] == [(None, None), (None, None)]


async def test_keep_alive_0_unloads_as_soon_as_the_request_ends(
    make_pool: Any, world: World
) -> None:
    pool = make_pool(config("a", default_ttl=0))
    async with pool.lease("a"):
        pool.set_keep_alive(pool.entries["a"], 0)
        await asyncio.sleep(0.02)
        assert running(pool) == ["a"], "never while the request runs"
    await until(lambda: world.up == set(), 1, "keep_alive 0 to unload a")
    assert world.events == ["start a", "stop reason=ttl a"]


async def test_a_ttl_counts_from_the_last_request(make_pool: Any, world: World) -> None:
    pool = make_pool(config("a", default_ttl=0))
    await use(pool, "a")
    pool.set_keep_alive(pool.entries["a"], 0.1)
    await asyncio.sleep(0.05)
    assert running(pool) == ["a"]
    await until(lambda: running(pool) == [], 1, "the ttl to unload a")


async def test_a_crash_is_noticed_and_the_next_request_starts_it_again(
    make_pool: Any, world: World
) -> None:
    pool = make_pool(config("a"))
    await use(pool, "a")
    world.child("a").crash()
    assert running(pool) == []
    await use(pool, "a")
    assert world.events == ["start a", "crash a", "start a"]


async def test_waiters_share_a_failed_load_and_the_next_request_tries_again(
    make_pool: Any, world: World
) -> None:
    pool = make_pool(config("a"))
    world.failing.add("a")
    results = await asyncio.gather(*(use(pool, "a") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, StartFailed) for r in results), results
    assert world.events.count("start a") == 1
    world.failing.clear()
    await use(pool, "a")
    assert world.events.count("start a") == 2


async def test_a_full_queue_refuses_and_a_hung_up_waiter_frees_its_place(make_pool: Any) -> None:
    model = {"name": "q", "path": "q", "concurrency": 1, "max_queue": 1}
    pool = make_pool(validate({"models": [model]}))
    first = Holder(pool, "q")
    await first.leased.wait()
    queued = asyncio.create_task(use(pool, "q"))
    await until(lambda: pool.entries["q"].waiting == 1, 1, "the second request to queue")
    with pytest.raises(Overloaded):
        await use(pool, "q")
    queued.cancel()
    await until(lambda: pool.entries["q"].waiting == 0, 1, "the hung-up waiter to leave")
    again = asyncio.create_task(use(pool, "q"))
    await first.finish()
    await asyncio.wait_for(again, 1)


async def test_presets_of_one_file_share_a_child_and_never_evict_each_other(
    make_pool: Any, world: World
) -> None:
    cfg = validate(
        {
            "models": [
                {"name": "base", "path": "m.gguf"},
                {"name": "pirate", "from": "base", "system_prompt": "Arr."},
            ]
        }
    )
    pool = make_pool(cfg)
    await use(pool, "base")
    await use(pool, "pirate")
    assert world.events == ["start base"]
    assert running(pool) == ["base", "pirate"]


async def test_a_lease_says_the_name_its_childs_answers_carry(make_pool: Any) -> None:
    """The child's ``--alias`` is the name of the entry that started it: a preset that shares
    the child gets another name back, and a name corral did not give is not known (None)."""
    cfg = validate(
        {
            "models": [
                {"name": "base", "path": "m.gguf"},
                {"name": "pirate", "from": "base", "system_prompt": "Arr."},
                {"name": "own", "path": "o.gguf", "args": ["--alias", "mine"]},
                {"name": "custom", "cmd": ["srv", "{port}"]},
            ]
        }
    )
    pool = make_pool(cfg)
    cases = [("pirate", "pirate"), ("base", "pirate"), ("own", None), ("custom", None)]
    for asked, answers_as in cases:
        async with pool.lease(asked) as lease:
            assert lease.answers_as == answers_as, asked
