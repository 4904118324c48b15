"""The hot path's lane (``http.direct_body``): a streamed body goes from the child's socket
callback to the client's socket, in order, while the client keeps up; what it refuses goes
through ``send`` as before, and nothing is lost or reordered."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message, Scope

from corral.generator.loader import validate
from corral.supervisor.app import BODY_BLIND, build_app
from corral.supervisor.http import client, client_pool, direct_body, proxy
from corral.supervisor.service import Service
from tests.supervisor.test_client import Scripted, scripted
from tests.support import CorralServer, fake_cmd

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
END = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Child:
    """A scripted child that sends its answer's head, then each piece when told to."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def reply(self, reader: Any, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(CHUNKED)
        await writer.drain()
        while (piece := await self.queue.get()) is not None:
            writer.write(piece)
            await writer.drain()

    def send(self, *pieces: bytes) -> None:
        for piece in pieces:
            self.queue.put_nowait(piece)


async def until(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


class Sink:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.accepts = True

    def __call__(self, piece: bytes) -> bool:
        if self.accepts:
            self.got.append(piece)
        return self.accepts


async def open_answer(server: Scripted, silence: float = float("inf")) -> client.Answer:
    head = b"POST /x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    return await client_pool.Pool().request("POST", server.port, head, b"", silence)


async def test_diverted_pieces_reach_the_sink_as_read_and_iter_any_only_ends_the_body() -> None:
    child, sink = Child(), Sink()
    async with scripted(child.reply) as server:
        answer = await open_answer(server)
        answer.divert(sink)
        rest = asyncio.ensure_future(answer.read())
        await asyncio.sleep(0.05)  # the relay waits before anything comes
        child.send(chunk(b"a"))
        await until(lambda: sink.got == [b"a"])
        child.send(chunk(b"b") + chunk(b"c"))  # two events waiting in the socket together
        await until(lambda: b"".join(sink.got) == b"abc")
        assert sink.got == [b"a", b"bc"], "what one read brought leaves in one write"
        assert not rest.done(), "nothing woke the relay for the diverted pieces"
        child.send(END)
        assert await rest == b"", "iter_any gave out nothing the sink took"


async def test_a_refused_piece_and_all_after_it_come_through_iter_any_in_order() -> None:
    child, sink = Child(), Sink()
    async with scripted(child.reply) as server:
        answer = await open_answer(server)
        answer.divert(sink)
        pieces = answer.iter_any()
        first = asyncio.ensure_future(anext(pieces))
        await asyncio.sleep(0.05)
        child.send(chunk(b"a"))
        await until(lambda: sink.got == [b"a"])
        sink.accepts = False  # the client's socket is full
        child.send(chunk(b"b"))
        assert await first == b"b"
        sink.accepts = True  # writable again, but "b" is still on its way through send
        child.send(chunk(b"c"))
        await asyncio.sleep(0.05)
        assert sink.got == [b"a"], "c overtook b"
        assert await anext(pieces) == b"c"
        second = asyncio.ensure_future(anext(pieces))
        await asyncio.sleep(0.05)  # the relay waits again: the sink may take over
        child.send(chunk(b"d"), END)
        with pytest.raises(StopAsyncIteration):
            await second
        assert sink.got == [b"a", b"d"]


async def test_diverted_bytes_keep_the_silence_deadline_moving() -> None:
    child, sink = Child(), Sink()
    async with scripted(child.reply) as server:
        answer = await open_answer(server, silence=0.4)
        answer.divert(sink)
        body = asyncio.ensure_future(answer.read())
        for i in range(6):  # 1.2 s of pieces, each well within the 0.4 s of silence
            child.send(chunk(b"%d" % i))
            await asyncio.sleep(0.15)
        assert not body.done(), "the child was silent for no 0.4 s stretch"
        with pytest.raises(client.Silent):
            await body  # now it is
        assert b"".join(sink.got) == b"012345"


def broken(piece: bytes) -> bool:
    raise ValueError("a transform's bug")


async def test_a_sink_that_raises_breaks_the_answer_and_its_connection() -> None:
    child = Child()

    async with scripted(child.reply) as server:
        answer = await open_answer(server)
        answer.divert(broken)
        body = asyncio.ensure_future(answer.read())
        await asyncio.sleep(0.05)
        child.send(chunk(b"a"))
        with pytest.raises(ValueError, match="a transform's bug"):
            await body
        assert answer.transport is not None and answer.transport.is_closing()


@dataclass
class Flow:
    write_paused: bool = False


@dataclass
class Transport:
    writes: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writes.append(data)


@dataclass
class Cycle:
    """What the lane reads of uvicorn's request cycle; ``send`` plays uvicorn's part."""

    transport: Transport = field(default_factory=Transport)
    flow: Flow = field(default_factory=Flow)
    disconnected: bool = False
    response_started: bool = False
    response_complete: bool = False
    chunked_encoding: bool | None = None
    sent: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.start":
            self.response_started, self.chunked_encoding = True, True
        elif not message.get("more_body", False):
            self.response_complete = True


class Upper:
    media_type = None

    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def close(self, broken: bool) -> bytes:
        return b""


async def relay_through(scope_of: Callable[[Cycle], Scope]) -> Cycle:
    child, cycle = Child(), Cycle()
    scope = scope_of(cycle)

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    async def done() -> None:
        pass

    async with scripted(child.reply) as server:
        answer = await open_answer(server)
        relay = proxy.Relay(answer, "m", done, Upper())
        running = asyncio.ensure_future(relay(scope, receive, cycle.send))
        await until(lambda: cycle.response_started)
        await asyncio.sleep(0.05)
        for piece in (b"a", b"b", b"c"):
            child.send(chunk(piece))
            await asyncio.sleep(0.02)
        child.send(END)
        await asyncio.wait_for(running, 5)
    return cycle


def lane_scope(cycle: Cycle) -> dict[str, Any]:
    offer = direct_body.offer(cycle)  # type: ignore[arg-type]
    return {"type": "http", "path": "/v1/chat/completions", "extensions": {direct_body.KEY: offer}}


async def test_the_relay_writes_a_streamed_body_past_send_transformed() -> None:
    cycle = await relay_through(lane_scope)
    assert cycle.transport.writes == [chunk(b"A"), chunk(b"B"), chunk(b"C")]
    bodies = [m for m in cycle.sent if m["type"] == "http.response.body"]
    assert bodies == [{"type": "http.response.body", "body": b""}], "only the end went by send"


async def test_without_the_lane_every_piece_goes_through_send() -> None:
    cycle = await relay_through(lambda cycle: direct_body.without(lane_scope(cycle)))
    assert cycle.transport.writes == []
    bodies = b"".join(m.get("body", b"") for m in cycle.sent if m["type"] == "http.response.body")
    assert bodies == b"ABC"


def test_without_leaves_other_extensions_and_the_scope_it_was_given() -> None:
    scope = lane_scope(Cycle())
    scope["extensions"]["http.response.trailers"] = {}
    stripped = direct_body.without(scope)
    assert direct_body.lane(stripped) is None
    assert stripped["extensions"] == {"http.response.trailers": {}}
    assert direct_body.lane(scope) is not None


def test_every_middleware_corral_serves_through_is_one_that_ignores_the_body() -> None:
    # A middleware added to build_app that holds, counts or rewrites body messages would
    # miss every streamed token: it must pass direct_body.without(scope) on, and be added
    # to BODY_BLIND only if it does not need them.
    config = validate({"models": [{"name": "a", "path": "a.gguf"}]})
    service = Service(config, lambda: config, "t")
    app = build_app(service)
    assert tuple(m.cls for m in app.user_middleware) == tuple[object, ...](BODY_BLIND)


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    config = {"models": [{"name": "m", "cmd": fake_cmd("m", "--tokens", "4000")}]}
    with CorralServer(config, tmp_path_factory.mktemp("lane")) as running:
        yield running


def test_a_slow_reader_gets_a_long_stream_whole_and_in_order(streaming: CorralServer) -> None:
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        sock.connect(("127.0.0.1", streaming.port))
        sock.sendall(request)
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            piece = sock.recv(2048)
            assert piece, "corral closed the stream early"
            received += piece
            if len(received) % 7 == 0:
                time.sleep(0.01)  # now and then, a reader that stops for a moment
    text = _unchunked(received.split(b"\r\n\r\n", 1)[1]).decode()
    tokens = [line for line in text.split("\n\n") if line.startswith("data: {")]
    assert len(tokens) == 4000 + 1  # the fake's 4,000 tokens, then its last chunk
    order = [int(t) for t in re.findall(r'"content":\s*" t(\d+)"', text)]
    assert order == list(range(1, 4000)), "a token lost or out of order"
    assert text.rstrip().endswith("data: [DONE]")


def _unchunked(data: bytes) -> bytes:
    out: list[bytes] = []
    at = 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        at = end + 2 + size + 2
