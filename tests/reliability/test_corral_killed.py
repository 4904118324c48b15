"""corral itself SIGKILLed mid-stream, then restarted with the same config and port.

A SIGKILLed corral runs no cleanup. Its direct children die with it (the parent-death signal),
but a server started by a ``cmd`` wrapper is a grandchild, which the kernel does not cover:
it survives, still holding its port and memory. The restarted corral, the same instance to
the reaper (same config file and port), must kill it, then serve.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import psutil

from tests.reliability.helpers import assert_no_orphans, kill, marked, same_instance
from tests.support import FAKE_UPSTREAM, CorralServer, completion, pids_gone, wait_until

SLOW = "--tokens 40 --token-delay 0.05"


def wrapped_fake(name: str) -> list[str]:
    """A shell that runs the fake in the background and waits: the fake is a grandchild."""
    fake = f"{sys.executable} {FAKE_UPSTREAM} --port {{port}} --name {name} {SLOW}"
    return ["sh", "-c", f"{fake} & wait"]


async def stream_until_killed(server: CorralServer) -> tuple[str, BaseException | None]:
    """Stream from ``w``; SIGKILL corral after the first chunk; return what the client saw."""
    received = ""
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"model": "w", "prompt": "x", "stream": True}
        try:
            async with client.stream("POST", f"{server.url}/v1/completions", json=body) as answer:
                async for part in answer.aiter_text():
                    if not received:
                        kill(server)
                    received += part
        except httpx.TransportError as exc:
            return received, exc
    return received, None


def test_a_killed_corral_is_restarted_and_reaps_what_escaped_it(tmp_path: Path) -> None:
    config = {"models": [{"name": "w", "cmd": wrapped_fake("w")}]}
    first = CorralServer(config, tmp_path)
    try:
        with first:
            received, error = asyncio.run(stream_until_killed(first))
            # The client learns at once that the answer broke off; it does not wait for more.
            assert error is not None, f"the stream went on without corral: {received!r}"
            assert "[DONE]" not in received
        escaped = marked([first.pid])
        assert escaped, "the grandchild should have outlived its SIGKILLed corral"
        # The wrapper dies with corral (its death signal) and may turn zombie between the
        # listing and this read (a container's PID 1 may never reap it): what still lives
        # must be the server that escaped.
        living = command_lines(escaped)
        assert living and all("fake_upstream.py" in line for line in living), living

        with same_instance(first, config, tmp_path) as second:
            wait_until(lambda: pids_gone([p.pid for p in escaped]), 10, "the strays to be reaped")
            assert "reaped 1 stray" in second.log()
            answer = completion(second, "w")
            assert answer.status_code == 200 and answer.json()["upstream"] == "w"
        assert_no_orphans(first, second)
    finally:
        if first.proc is not None:
            for proc in marked([first.pid]):
                proc.kill()  # only if the reaper failed: never leave the machine dirty


def command_lines(procs: list[psutil.Process]) -> list[str]:
    """The command lines of those of ``procs`` that are still alive (not zombies)."""
    lines = []
    for proc in procs:
        try:
            lines.append(" ".join(proc.cmdline()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return lines
