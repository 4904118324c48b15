"""Is a child up yet: a free loopback port for it, and its ``GET /health``.

Owns the two network facts a load needs: a port nothing listens on (the child may still
lose a race for it; ``process`` retries) and the status of the child's health probe. It
keeps no state.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

PROBE_TIMEOUT = 1.0


def free_port() -> int:
    """A loopback port that nothing listens on right now (the child may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def probe_health(port: int, limit: float) -> int | None:
    """The status code of ``GET /health`` on the child, or None while nothing answers.

    A raw request on purpose: it runs every 10 ms during a load, and a client library's
    setup per probe would cost more than the probe.
    """
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request.encode())
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
