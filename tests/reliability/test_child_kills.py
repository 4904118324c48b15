"""A child SIGKILLed at random points (while it loads, mid-stream, while idle), with the fake
upstream and several clients at once.

After each kill: every client got its answer or a clear error (never a hang, a dropped
connection or a stream cut without a word), no child is orphaned, and the next request
succeeds. The seed is printed on failure; CORRAL_FAULT_SEED replays one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability.helpers import (
    assert_envelope,
    assert_no_orphans,
    assert_openai_error,
    children_per_model,
)
from tests.support import CorralServer, completion, fake_cmd, pids_gone, wait_until

PHASES = ("load", "stream", "idle")
ROUNDS = 6
SEED = int(os.environ.get("CORRAL_FAULT_SEED", random.randrange(2**32)))
# Slow enough that a kill lands inside each phase: loading takes 0.5 s after the fake's own
# start, and a stream runs 15 x 0.04 s.
FAKE = ("--load-seconds", "0.5", "--tokens", "15", "--token-delay", "0.04")


@dataclass
class Round:
    phase: str
    model: str
    streams: list[bool]
    delay: float
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    outcomes: list[str] = field(default_factory=list)
    killed: int | None = None


async def client_call(
    server: CorralServer, client: httpx.AsyncClient, r: Round, stream: bool
) -> str:
    """One client's request; returns ``answered`` or the kind of clear error it got."""
    body = {"model": r.model, "prompt": "x", "stream": stream}
    url = f"{server.url}/v1/completions"
    if not stream:
        answer = await client.post(url, json=body)
        if answer.status_code == 200:
            assert answer.json()["choices"][0]["text"].startswith(f"{r.model}:"), answer.text
            return "answered"
        error = assert_openai_error(answer, 502, 503)
        assert repr(r.model) in error["message"], error
        return f"error {answer.status_code}"
    async with client.stream("POST", url, json=body) as answer:
        if answer.status_code != 200:
            await answer.aread()
            error = assert_openai_error(answer, 502, 503)
            assert repr(r.model) in error["message"], error
            return f"error {answer.status_code}"
        text = ""
        async for part in answer.aiter_text():
            text += part
            r.first_chunk.set()
    if text.endswith("data: [DONE]\n\n"):
        return "answered"
    # Cut short: the last event must say why, in the OpenAI shape.
    last = text.rstrip().rsplit("data: ", 1)[-1]
    assert '"upstream_error"' in last, f"a stream ended without [DONE] or a note: {text!r}"
    assert_envelope(httpx.Response(502, content=last).json(), 502)
    return "error in stream"


async def model_pid(client: httpx.AsyncClient, server: CorralServer, model: str) -> int:
    """The pid of ``model``'s child as soon as corral has spawned one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        running = (await client.get(f"{server.url}/running")).json()["running"]
        pids = [r["pid"] for r in running if r["model"] == model and r["pid"]]
        if pids:
            return int(pids[0])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no child for {model} within 10 s")


async def kill_at(
    server: CorralServer, client: httpx.AsyncClient, r: Round, calls: asyncio.Future[list[str]]
) -> None:
    if r.phase == "load":
        pid = await model_pid(client, server, r.model)
    elif r.phase == "stream":
        await asyncio.wait_for(r.first_chunk.wait(), 20)
        pid = await model_pid(client, server, r.model)
    else:
        await calls
        pid = await model_pid(client, server, r.model)
    await asyncio.sleep(r.delay)
    os.kill(pid, signal.SIGKILL)
    r.killed = pid


async def play(server: CorralServer, r: Round) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        calls = asyncio.ensure_future(
            asyncio.gather(*(client_call(server, client, r, s) for s in r.streams))
        )
        await kill_at(server, client, r, calls)
        r.outcomes = await calls


def plan(rng: random.Random) -> list[Round]:
    rounds = []
    for i in range(ROUNDS):
        phase = PHASES[i % len(PHASES)]
        streams = [True, *(rng.random() < 0.5 for _ in range(2))]
        rounds.append(Round(phase, rng.choice("ab"), streams, rng.uniform(0, 0.3)))
    return rounds


def check(r: Round, where: str) -> None:
    if r.phase == "load":
        assert set(r.outcomes) == {"error 503"}, f"a killed load fails each waiter: {where}"
    elif r.phase == "stream":
        assert r.outcomes[0] == "error in stream", f"a killed stream says so: {where}"
    else:
        assert set(r.outcomes) == {"answered"}, where


@pytest.fixture
def server(tmp_path: Path) -> CorralServer:
    config = {"models": [{"name": n, "cmd": fake_cmd(n, *FAKE)} for n in "ab"]}
    return CorralServer(config, tmp_path)


def run_round(server: CorralServer, r: Round) -> None:
    where = f"seed {SEED}, {r}"
    if r.phase == "load":  # the model must load during the round, not before it
        httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    asyncio.run(play(server, r))
    check(r, where)
    killed = r.killed
    assert killed is not None

    def noticed() -> bool:
        return pids_gone([killed]) and all(x["pid"] != killed for x in server.running())

    wait_until(noticed, 10, f"corral to notice the kill ({where})")
    assert completion(server, r.model).status_code == 200, where
    assert all(n == 1 for n in children_per_model(server).values()), where
    assert_no_orphans(server)


def test_children_killed_at_random_points(server: CorralServer) -> None:
    with server:
        for r in plan(random.Random(SEED)):
            run_round(server, r)
    assert_no_orphans(server)
    log = server.log()
    assert "reason=crash" in log and "during load" in log, "both kinds of death were seen"


def test_a_grandchild_that_left_the_process_group_is_killed_at_unload(tmp_path: Path) -> None:
    """Issue 26: a `cmd` child that setsid's a daemon; a group signal misses it."""
    config = {"models": [{"name": "m", "cmd": fake_cmd("m", "--setsid-grandchild")}]}
    pid = 0
    try:
        with CorralServer(config, tmp_path) as server:
            assert completion(server, "m").status_code == 200
            child_log = httpx.get(f"{server.url}/logs/m").text
            found = re.search(r"setsid grandchild pid=(\d+)", child_log)
            assert found, child_log
            pid = int(found[1])
            assert not pids_gone([pid])
            assert httpx.post(f"{server.url}/unload", timeout=30).status_code == 200
            wait_until(lambda: pids_gone([pid]), 10, "the setsid grandchild to be killed")
            assert "which left its process group" in server.log()
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
