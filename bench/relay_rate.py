"""The relay-rate row: how many streamed tokens per second one proxy relays in all.

Owns the load: ``clients`` connections, each asking for one streamed chat completion after
another from ``bench.streamer`` (which streams as fast as it can), for ``seconds``; the
tokens counted are the events that reached the client; and the row's two contenders, the
streamer asked directly and corral in front of it. The client is raw asyncio sockets on
uvloop that count ``data: {`` per read, so that the load generator costs as little as it can
on the same two cores. Run alone, ``python -m bench.relay_rate`` measures corral (and the
floor, ``bare_relay``) against the streamer asked directly, each the same way, and prints
tokens/s and the proxy's CPU microseconds per token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import procs
from bench.contenders import FAKE, REPO, Contender, Corral, Setup
from bench.floors import floor
from bench.measure import rotated

log = logging.getLogger("bench")

#: The event each token comes in; split across two reads at most by len(_MARK) - 1 bytes.
_MARK = b"data: {"
CLIENTS = (1, 8, 64)


def streamer_argv(port: str) -> list[str]:
    """``bench.streamer``: streams tokens as fast as it can, so only the relay costs time."""
    return [sys.executable, str(REPO / "bench" / "streamer.py"), port]


class StreamDirect(Contender):
    """The streamer asked directly: what the relay-rate row's clients can take in at most."""

    model = FAKE

    def __init__(self, setup: Setup, name: str = "direct-stream") -> None:
        super().__init__(setup, name)

    def argv(self) -> list[str]:
        return streamer_argv(str(self.port))


class StreamCorral(Corral):
    """corral in front of the streamer (a ``cmd`` model, no TTL)."""

    model = FAKE

    def __init__(self, setup: Setup, name: str = "corral-stream") -> None:
        super().__init__(setup, name)

    def config(self) -> dict[str, object]:
        return {"default_ttl": 0, "models": [{"name": FAKE, "cmd": streamer_argv("{port}")}]}


@dataclass
class Rate:
    tokens: int
    seconds: float
    requests: int
    cpu_us_per_token: float | None  # the proxy's own process, None for the streamer alone

    @property
    def per_second(self) -> float:
        return self.tokens / self.seconds


def _request(port: int, model: str, tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Count."}],
            "max_tokens": tokens,
            "stream": True,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(port: int, request: bytes, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        while time.monotonic() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"relay rate: {head.splitlines()[0]!r}")
            tail = b""
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    raise RuntimeError("relay rate: the server closed mid-stream")
                seen = tail + data
                counts[0] += seen.count(_MARK)
                tail = seen[-(len(_MARK) - 1) :]
                if seen.endswith(b"0\r\n\r\n"):
                    break
            counts[1] += 1
    finally:
        writer.close()


async def _load(
    port: int, model: str, clients: int, seconds: float, tokens: int
) -> tuple[int, int]:
    counts = [0, 0]  # tokens, requests
    request = _request(port, model, tokens)
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(port, request, until, counts) for _ in range(clients)))
    return counts[0], counts[1]


def rate(
    port: int,
    model: str,
    clients: int,
    seconds: float = 3.0,
    tokens: int = 512,
    proxy_pid: int | None = None,
) -> Rate:
    """Streamed tokens per second through ``port`` to ``clients`` clients; with
    ``proxy_pid``, that process's CPU per token relayed (its children not counted)."""
    before = procs.cpu_seconds(proxy_pid) if proxy_pid is not None else 0.0
    start = time.perf_counter()
    got, requests = uvloop.run(_load(port, model, clients, seconds, tokens))
    elapsed = time.perf_counter() - start
    cpu = None
    if proxy_pid is not None:
        cpu = 1e6 * (procs.cpu_seconds(proxy_pid) - before) / max(got, 1)
    return Rate(got, elapsed, requests, cpu)


def measure(
    contenders: Sequence[StreamDirect | StreamCorral], clients: Sequence[int], rounds: int
) -> dict[str, dict[str, list[dict[str, float | None]]]]:
    """Per contender and client count, ``rounds`` runs (contenders taking turns)."""
    found: dict[str, dict[str, list[dict[str, float | None]]]] = {}
    for n in clients:
        for turn in range(rounds):
            for c in rotated(contenders, turn):
                assert c.proc is not None
                pid = c.proc.pid if isinstance(c, StreamCorral) else None
                rate(c.port, c.model, n, seconds=0.5, proxy_pid=None)  # warm the connections
                got = rate(c.port, c.model, n, proxy_pid=pid)
                found.setdefault(c.name, {}).setdefault(str(n), []).append(
                    {"tokens_per_s": got.per_second, "cpu_us_per_token": got.cpu_us_per_token}
                )
                cpu = got.cpu_us_per_token
                shown = f", {cpu:.1f} us CPU per token" if cpu is not None else ""
                log.info("relay %s, %d clients: %.0f tokens/s%s", c.name, n, got.per_second, shown)
    return found


def floor_rates(server: str, child: int, work: Path) -> None:
    """The relay-rate row for ``bench.bare_relay`` on ``server``, in front of ``child``."""
    proc, port = floor(work, child, f"floor-{server}", server)
    for n in CLIENTS:
        rate(port, "fake", n, seconds=0.5)  # warm the connections
        # granian serves from a worker process: its CPU is the tree's.
        got = rate(port, "fake", n, proxy_pid=procs.tree(proc.pid)[-1].pid)
        log.info(
            "relay floor on %s, %d clients: %.0f tokens/s, %.1f us CPU per token",
            *(server, n, got.per_second, got.cpu_us_per_token or 0.0),
        )
    procs.stop(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="streamed tokens/s one proxy relays, against direct")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--floor",
        action="append",
        default=[],
        choices=("uvicorn", "granian"),
        help="also bare_relay (the app and corral's client, nothing else) on this server",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="corral-relay-rate-"))
    setup = Setup("llama-server", work, work)
    contenders: list[StreamDirect | StreamCorral] = [StreamDirect(setup), StreamCorral(setup)]
    try:
        for c in contenders:
            c.start()
        for server in args.floor:
            floor_rates(server, contenders[0].port, work)
        measure(contenders, CLIENTS, args.rounds)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
