"""A fake llama-server that streams tokens as fast as it can: the upstream of the relay-rate row.

Run: ``python -m bench.streamer PORT``. It answers ``GET /health`` (200) and every POST with a
chunked ``text/event-stream`` of ``max_tokens`` events (default 512) shaped like
llama-server's chat chunks, then ``data: [DONE]``. Each event is its own chunk and its own
write, and it yields to the event loop between two of them, as llama-server sends each
token as it is made; whatever the reader has not taken yet piles up in the socket. It
stops writing while the reader's socket is full (flow control), so a slow relay is
measured, not hidden in this process's memory.

A raw asyncio protocol on uvloop, not aiohttp (``tests/fake_upstream.py``): what it costs
per token is a small part of what any relay in front of it costs, so the row measures the
relay. It knows nothing of corral.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvloop

#: One token's event, as llama-server's /v1/chat/completions streams it (about 250 bytes).
_EVENT = (
    b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" token"}}],'
    b'"created":1765000000,"id":"chatcmpl-0123456789abcdefghijklmnopqrstuv","model":"fake",'
    b'"system_fingerprint":"b7400-0123abcd","object":"chat.completion.chunk"}\n\n'
)
_CHUNK = b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT)
_DONE_EVENT = b"data: [DONE]\n\n"
_DONE = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_DONE_EVENT), _DONE_EVENT)
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n"
)
_HEALTH = b'{"status":"ok"}'
_HEALTH_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_HEALTH), _HEALTH)
)
DEFAULT_TOKENS = 512


class Streamer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.writable = asyncio.Event()
        self.writable.set()
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()  # a stream waiting to write sees the close and ends

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
        assert self.transport is not None
        if head.startswith("POST"):
            self.busy = True
            asyncio.get_running_loop().create_task(self._stream(_tokens(body)))
        else:
            self.transport.write(_HEALTH_ANSWER)
            self._next()

    async def _stream(self, tokens: int) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(_STREAM_HEAD)
        for _ in range(tokens):
            if not self.writable.is_set():
                await self.writable.wait()
            if transport.is_closing():
                return
            transport.write(_CHUNK)
            await asyncio.sleep(0)
        transport.write(_DONE)
        self.busy = False
        self._next()


def _tokens(body: bytes) -> int:
    try:
        asked = json.loads(body or b"{}").get("max_tokens")
    except ValueError:
        return DEFAULT_TOKENS
    return asked if isinstance(asked, int) and asked > 0 else DEFAULT_TOKENS


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Streamer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
