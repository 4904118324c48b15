"""The HTTP/1.1 client that talks to children (``http.client``), against scripted servers:
each test's server reads one request head (and body) at a time and writes exactly the bytes
the test gives it, so every framing, fault and timing is the test's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from corral.supervisor.http import client, client_pool
from corral.supervisor.http.headers import forwarded_raw, request_head

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


class Scripted:
    """A server on 127.0.0.1 that answers each request with ``reply``; counts connections
    and keeps each request's head and body."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.reply(reader, writer, head)
                if writer.is_closing():
                    return
        writer.close()


@contextlib.asynccontextmanager
async def scripted(reply: Reply) -> AsyncIterator[Scripted]:
    server = Scripted(reply)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        for writer in server.writers:
            writer.close()


def writes(*pieces: bytes, close: bool = False) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        if close:
            writer.close()

    return reply


def head(method: str, port: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    headers = [(b"content-type", b"application/json")]
    if extra:
        headers.append(tuple(extra.split(b": ", 1)))  # type: ignore[arg-type]
    return request_head(method, "/v1/completions", port, headers, len(body))


OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


async def ask(pool: client_pool.Pool, server: Scripted, method: str = "POST") -> client.Answer:
    body = b'{"prompt":"x"}' if method == "POST" else b""
    return await pool.request(method, server.port, head(method, server.port, body), body)


async def test_a_content_length_answer_is_read_whole_and_its_connection_reused() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(OK)) as server:
        for _ in range(3):
            answer = await ask(pool, server)
            assert answer.status == 200
            assert answer.header(b"content-type") == b"application/json"
            assert await answer.read() == b'{"ok":true}'
            answer.release()
        assert server.connections == 1
        assert pool.opened == 1
        assert len(server.requests) == 3
        first = server.requests[0]
        assert first.startswith(b"POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1:")
        assert b'content-length: 14\r\n\r\n{"prompt":"x"}' in first
    pool.close()


async def test_a_chunked_answer_comes_piece_by_piece_as_the_child_sends_it() -> None:
    second = asyncio.Event()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        await writer.drain()
        await second.wait()  # the client must have the first piece before this one exists
        writer.write(b"3\r\nabc\r\n0\r\n\r\n")
        await writer.drain()

    pool = client_pool.Pool()
    async with scripted(reply) as server:
        answer = await ask(pool, server)
        pieces = answer.iter_any()
        assert await anext(pieces) == b"data: "
        second.set()
        assert [piece async for piece in pieces] == [b"abc"]
        answer.release()
        again = await ask(pool, server)  # chunked framing ended cleanly: reusable
        assert server.connections == 1
        again.close()
    pool.close()


async def test_an_answer_without_length_ends_when_the_child_closes_and_is_not_reused() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(b"HTTP/1.1 200 OK\r\n\r\nall of it", close=True)) as server:
        answer = await ask(pool, server)
        assert await answer.read() == b"all of it"
        answer.release()
        await (await ask(pool, server)).read()
        assert server.connections == 2
    pool.close()


async def test_connection_close_from_the_child_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    pool = client_pool.Pool()
    async with scripted(writes(closing)) as server:
        for _ in range(2):
            answer = await ask(pool, server)
            assert await answer.read() == b"ok"
            answer.release()
        assert server.connections == 2
    pool.close()


async def test_a_stale_pooled_connection_is_not_used() -> None:
    """The child closed an idle kept-alive connection (as llama-server does after 5 s): the
    next request goes out on a fresh one, for any method."""
    pool = client_pool.Pool()
    async with scripted(writes(OK, close=True)) as server:
        first = await ask(pool, server)
        await first.read()
        first.release()  # pooled: its framing said keep-alive
        await asyncio.sleep(0.05)  # the close reaches the pool
        answer = await ask(pool, server)
        assert await answer.read() == b'{"ok":true}'
        assert server.connections == 2
    pool.close()


async def test_an_idle_connection_past_idle_s_is_not_reused() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(OK)) as server:
        first = await ask(pool, server)
        await first.read()
        first.release()
        first.idle_since -= client_pool.IDLE_S + 1
        second = await ask(pool, server)
        await second.read()
        assert server.connections == 2
    pool.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_fresh_one(
    method: str,
) -> None:
    """llama-server closes a kept-alive connection right after each streamed answer: a
    request sent in that moment, on the old connection, must still be answered."""
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    served = 0

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: bytes) -> None:
        nonlocal served
        served += 1
        writer.write(chunked)
        await writer.drain()
        await asyncio.sleep(0.01)  # the last chunk is read, then the close comes
        writer.close()

    pool = client_pool.Pool()
    async with scripted(reply) as server:
        for _ in range(3):
            answer = await ask(pool, server, method)
            assert await answer.read() == b"abc"
            answer.release()  # pooled, and closed by the child a moment later
            # the next request goes out at once, on the pooled connection, before the close
        assert served == 3
    pool.close()


async def test_a_reused_connection_is_not_retried_once_an_answer_began() -> None:
    async def reply(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        if b"second" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhal")
            await writer.drain()
            writer.close()
            return
        writer.write(OK)
        await writer.drain()

    pool = client_pool.Pool()
    async with scripted(reply) as server:
        first = await ask(pool, server)
        await first.read()
        first.release()
        head = request_head("POST", "/second", server.port, [], 0)
        answer = await pool.request("POST", server.port, head, b"")
        with pytest.raises(client.Broken, match="mid-answer"):
            await answer.read()
        assert len(server.requests) == 2  # asked once: the answer had begun
    pool.close()


async def test_a_child_that_closes_mid_chunk_breaks_the_answer() -> None:
    cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nonly half"
    pool = client_pool.Pool()
    async with scripted(writes(cut, close=True)) as server:
        answer = await ask(pool, server)
        with pytest.raises(client.Broken, match="mid-answer"):
            await answer.read()
        answer.close()
    pool.close()


async def test_a_child_that_closes_before_answering_is_broken() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(close=True)) as server:
        with pytest.raises(client.Broken, match="before answering"):
            await ask(pool, server)
    pool.close()


async def test_an_interim_100_continue_is_skipped_for_the_final_answer() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(b"HTTP/1.1 100 Continue\r\n\r\n", OK)) as server:
        answer = await ask(pool, server)
        assert answer.status == 200
        assert await answer.read() == b'{"ok":true}'
        answer.release()
        assert (await ask(pool, server)).status == 200
        assert server.connections == 1
    pool.close()


def test_expect_100_continue_is_not_forwarded() -> None:
    """corral has the whole body before it asks: a child must not wait to send 100."""
    sent = forwarded_raw({"Expect": "100-continue", "X-Trace": "1"}, "Bearer k")
    assert sent == [(b"x-trace", b"1"), (b"authorization", b"Bearer k")]


@pytest.mark.parametrize("size", [60 * 1024, 70 * 1024])
async def test_an_answer_head_over_the_limit_is_refused(size: int) -> None:
    big = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * size + b"\r\ncontent-length: 2\r\n\r\nok"
    pool = client_pool.Pool()
    async with scripted(writes(big)) as server:
        if size < client.MAX_HEAD_BYTES:
            answer = await ask(pool, server)
            assert len(answer.header(b"x-big") or b"") == size
            assert await answer.read() == b"ok"
        else:
            with pytest.raises(client.Broken, match=f"over {client.MAX_HEAD_BYTES} bytes"):
                await ask(pool, server)
    pool.close()


async def test_an_answer_that_is_not_http_is_broken() -> None:
    pool = client_pool.Pool()
    async with scripted(writes(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server:
        with pytest.raises(client.Broken, match="not valid HTTP"):
            await ask(pool, server)
    pool.close()


async def test_a_head_answer_has_no_body_whatever_its_length_says() -> None:
    pool = client_pool.Pool()
    headers = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
    async with scripted(writes(headers)) as server:
        answer = await ask(pool, server, "HEAD")
        assert answer.header(b"content-length") == b"1000"
        assert await answer.read() == b""
        answer.release()
    pool.close()


async def test_a_slow_reader_holds_the_child_back_instead_of_buffering() -> None:
    """8 MiB from a child, read slowly: corral holds at most about HIGH_WATER of it (plus a
    socket read), the rest waits in the child."""
    body = b"x" * (8 * 1024 * 1024)
    ahead = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
    pool = client_pool.Pool()
    async with scripted(writes(ahead, body)) as server:
        answer = await ask(pool, server)
        held: list[int] = []
        got = 0
        async for piece in answer.iter_any():
            got += len(piece)
            held.append(len(piece))
            await asyncio.sleep(0.01)  # the slow client
        assert got == len(body)
        assert max(held) <= client.HIGH_WATER + 512 * 1024
        answer.release()
    pool.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/x HTTP/1.1\r\nx: y", []),
        ("/v1/has space", []),
        ("/v1/x", [(b"x-a", b"1\r\nx-injected: 2")]),
        ("/v1/x", [(b"x-a", b"bare\rcr")]),
    ],
)
def test_a_request_that_would_split_its_lines_is_refused(
    path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(ValueError, match="line break or space"):
        request_head("GET", path, 1, headers, 0)


async def test_a_closed_port_is_an_oserror() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    pool = client_pool.Pool()
    with pytest.raises(OSError):
        await pool.request("GET", port, request_head("GET", "/", port, [], 0), b"")


async def test_a_stopped_childs_port_leaves_nothing_in_the_pool() -> None:
    """Children come and go on new ports: the pool must not keep a key per port ever used."""
    pool = client_pool.Pool()
    async with scripted(writes(OK, close=True)) as server:
        answer = await ask(pool, server)
        await answer.read()
        answer.release()
        await asyncio.sleep(0.05)  # the child's close reaches the pool
        assert pool.idle_ports() == []
    pool.close()


@pytest.mark.parametrize("reused", [False, True])
async def test_a_request_cancelled_while_waiting_closes_its_connection(reused: bool) -> None:
    """The client hung up before the child answered: the child must see its connection
    close (llama-server then stops generating), on a pooled connection as on a new one."""
    closed = asyncio.Event()

    async def reply(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        if b"hang" not in head:
            writer.write(OK)
            await writer.drain()
            return
        await reader.read()  # returns at the close
        closed.set()

    pool = client_pool.Pool()
    async with scripted(reply) as server:
        if reused:
            first = await ask(pool, server)
            await first.read()
            first.release()
        head = request_head("POST", "/hang", server.port, [], 0)
        task = asyncio.ensure_future(pool.request("POST", server.port, head, b""))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)
        assert server.connections == 1  # the pooled one was used when there was one
    pool.close()
