"""What a peer adds: a 1-token completion asked of corral B directly, and of corral A, which
passes it on to B (``peers``). Both ends run the fake upstream, which answers at once, so
the difference is A's routing and relay alone.

    .venv/bin/python -m bench.peer [--requests 300]

Prints the medians and the difference; it asserts nothing (speed is measured, not tested).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.client import Conn, one_token
from bench.contenders import FAKE, FakeCorral, Setup


class PeeringCorral(FakeCorral):
    """Corral A: no model of its own that is asked; B's fake model through ``peers``."""

    def __init__(self, setup: Setup, peer_url: str) -> None:
        super().__init__(setup, "corral-peering")
        self.peer_url = peer_url

    def config(self) -> dict[str, object]:
        return {
            "default_ttl": 0,
            "models": [{"name": "local", "cmd": ["true", "{port}"]}],
            "peers": {"b": {"url": self.peer_url, "models": [FAKE]}},
        }


def medians(conn: Conn, count: int) -> float:
    for _ in range(20):  # warm: B's child loaded, connections open
        conn.complete(one_token(FAKE))
    return statistics.median(conn.complete(one_token(FAKE)) for _ in range(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        setup = Setup(binary="unused", models=Path(work), work=Path(work))
        b = FakeCorral(setup, "corral-peer")
        b.start()
        a = PeeringCorral(setup, b.url)
        try:
            a.start()
            # Interleaved rounds, so that a slow moment of the machine hits both sides.
            direct, through = [], []
            for _ in range(3):
                direct.append(medians(b.conn, args.requests // 3))
                through.append(medians(a.conn, args.requests // 3))
        finally:
            a.stop()
            b.stop()
    d, t = statistics.median(direct) * 1000, statistics.median(through) * 1000
    print(f"direct to peer B: {d:.2f} ms; through A: {t:.2f} ms; A adds {t - d:.2f} ms (median)")


if __name__ == "__main__":
    main()
