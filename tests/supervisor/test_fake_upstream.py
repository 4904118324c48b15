"""The fake upstream plays the faults the other tests rely on; kept short on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from corral.supervisor.runtime.child.process import ChildProcess
from corral.supervisor.runtime.child.states import StartError
from tests.support import fake_argv, until


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def run_fake(children: list[ChildProcess], *flags: str, **kwargs: Any) -> ChildProcess:
    child = ChildProcess("fake", fake_argv(*flags), os.environ, 20.0, **kwargs)
    children.append(child)
    await child.start()
    return child


async def sse_lines(response: aiohttp.ClientResponse) -> list[str]:
    """The ``data:`` payloads received, up to the end or an abrupt close."""
    lines: list[str] = []
    try:
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))
    except aiohttp.ClientPayloadError:
        pass  # the fake died mid-stream: what arrived so far is the result
    return lines


async def test_stream_names_the_upstream_and_echoes_the_request(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    child = await run_fake(children, "--name", "alpha", "--tokens", "4")
    body = {"model": "m", "stream": True, "temperature": 0.25, "messages": []}
    async with session.post(f"{child.base_url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = await sse_lines(response)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "alpha: t1 t2 t3"
    assert chunks[0]["received"] == body
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_loading_answers_503_like_llama_server(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    child = ChildProcess(
        "fake",
        fake_argv("--load-seconds", "30"),
        os.environ,
        20.0,
    )
    children.append(child)
    loading = asyncio.create_task(child.start())
    await until(lambda: any("listening" in x for x in child.stderr_tail()))
    async with session.get(f"{child.base_url}/health") as response:
        assert response.status == 503
        error = (await response.json())["error"]
    assert error == {"code": 503, "message": "Loading model", "type": "unavailable_error"}
    await child.stop("teardown", grace=1.0)
    with pytest.raises(StartError, match="stopped while loading"):
        await loading


async def test_crash_after_chunks_cuts_the_stream(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    exits: list[int] = []
    child = await run_fake(
        children, "--crash-after-chunks", "2", on_exit=lambda _, code: exits.append(code)
    )
    body = {"stream": True, "prompt": "x"}
    async with session.post(f"{child.base_url}/v1/completions", json=body) as response:
        lines = await sse_lines(response)
    assert len(lines) == 2 and "[DONE]" not in lines
    await until(lambda: bool(exits))
    assert exits == [4]


async def test_hang_logs_the_client_hanging_up(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    child = await run_fake(children, "--hang")
    url = f"{child.base_url}/v1/chat/completions"
    with pytest.raises(TimeoutError):
        async with session.post(url, json={}, timeout=aiohttp.ClientTimeout(total=0.5)):
            pass

    def logged() -> list[str]:
        return child.stderr_tail()

    await until(lambda: "disconnected POST /v1/chat/completions after 0 chunks" in logged())
    assert "request POST /v1/chat/completions stream=False" in logged()


async def test_hang_up_mid_stream_stops_generation(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    child = await run_fake(children, "--tokens", "200", "--token-delay", "0.02")
    body = {"stream": True, "messages": []}
    async with session.post(f"{child.base_url}/v1/chat/completions", json=body) as response:
        await response.content.readline()  # the first chunk arrived: generation is under way
    # Leaving the block without reading on closes the connection.

    def logged() -> str:
        return " ".join(child.stderr_tail())

    await until(lambda: "disconnected POST /v1/chat/completions after" in logged())
    assert "done POST /v1/chat/completions" not in logged()


async def test_token_delay_slows_whole_answers_too(
    children: list[ChildProcess], session: aiohttp.ClientSession
) -> None:
    """A whole answer takes as long as its stream would: tests that hold a model busy with
    unstreamed requests rely on it (a queue that fills only if the first answer is slow)."""
    child = await run_fake(children, "--tokens", "5", "--token-delay", "0.1")
    began = time.monotonic()
    body = {"model": "x", "prompt": "x"}
    async with session.post(child.base_url + "/v1/completions", json=body) as answer:
        assert answer.status == 200
        await answer.json()
    assert time.monotonic() - began >= 0.5
