"""The floor under any Python relay: bytes spliced between a client and a child, no HTTP.

Each client connection gets its own connection to the child; whatever one side sends is
written to the other from the socket callback (uvloop), nothing parsed, framed or
transformed. No real proxy can be this cheap (it could not refuse, route or end an answer),
so ``bench.profile`` shows it as the limit: what a Python process on uvloop pays per
streamed token for one read and one write, against llama.cpp's C++ router.

Run: ``python -m bench.splice_relay LISTEN_PORT CHILD_PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class _ToClient(asyncio.Protocol):
    def __init__(self, client: _FromClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.client.transport is not None
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()


class _FromClient(asyncio.Protocol):
    def __init__(self, child: int) -> None:
        self.child = child
        self.transport: asyncio.Transport | None = None
        self.upstream: _ToClient | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: _ToClient(self), "127.0.0.1", self.child)
        self.upstream = upstream
        assert upstream.transport is not None
        for data in self.pending:
            upstream.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None or self.upstream.transport is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(listen: int, child: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FromClient(child), "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
