"""What watching corral costs its warm path: one-token completions with nobody watching,
against the same with two ``/events`` followers, a ``/logs/<model>/stream`` follower and a
``/metrics`` scrape every 0.5 s, alternating blocks in one run on one corral.

Run: ``.venv/bin/python -m bench.observe_cost [--requests N]``. Prints each condition's
median and p90 latency, their ratio, corral's CPU seconds per request in each, and what one
``/metrics`` scrape takes. The model is the demo (real llama-server, Gemma 3 270M).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml

from bench import procs
from bench.client import one_token
from bench.run import DEMO, binary

MODEL = "gemma"
BLOCK = 20


class Watchers:
    """Two event followers, a log follower and a scraper, until ``stop``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = threading.Event()
        self.scrapes = 0
        paths = ["/events", "/events", f"/logs/{MODEL}/stream"]
        self.threads = [threading.Thread(target=self._follow, args=(p,)) for p in paths]
        self.threads.append(threading.Thread(target=self._scrape))

    def __enter__(self) -> Watchers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(5)

    def _follow(self, path: str) -> None:
        timeout = httpx.Timeout(5, read=0.5)
        with httpx.Client(timeout=timeout) as client:
            while not self.done.is_set():
                try:
                    with client.stream("GET", self.url + path) as answer:
                        for _ in answer.iter_lines():
                            if self.done.is_set():
                                return
                except httpx.ReadTimeout:
                    continue  # a quiet stream: look at `done` again

    def _scrape(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.done.wait(0.5):
                client.get(self.url + "/metrics").raise_for_status()
                self.scrapes += 1


def block(client: httpx.Client, corral: psutil.Process) -> tuple[list[float], float]:
    """``BLOCK`` one-token completions: their latencies (ms) and corral's CPU seconds."""
    cpu = corral.cpu_times()
    took = []
    for _ in range(BLOCK):
        began = time.perf_counter()
        client.post("/v1/completions", json=one_token(MODEL)).raise_for_status()
        took.append((time.perf_counter() - began) * 1000)
    after = corral.cpu_times()
    return took, (after.user + after.system) - (cpu.user + cpu.system)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=400, help="per condition (default 400)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="corral-bench-observe-"))
    port = procs.free_port()
    config = {
        "llama_server": binary(),
        "default_ttl": 0,
        "models": [{"name": MODEL, "path": str(DEMO), "context_size": 1024}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    corral_bin = str(Path(sys.executable).with_name("corral"))
    argv_ = [corral_bin, "serve", "--config", str(work / "config.yaml"), "--port", str(port)]
    proc = procs.spawn(argv_, work / "corral.log")
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_for(lambda: _healthy(url), 60, "corral to answer /health")
        corral = psutil.Process(proc.pid)
        results: dict[str, list[float]] = {"plain": [], "watched": []}
        cpu: dict[str, float] = {"plain": 0.0, "watched": 0.0}
        with httpx.Client(base_url=url, timeout=60) as client:
            block(client, corral)  # load and warm up
            for turn in range(max(1, args.requests // BLOCK)):
                for name in ("plain", "watched") if turn % 2 == 0 else ("watched", "plain"):
                    if name == "watched":
                        with Watchers(url):
                            took, seconds = block(client, corral)
                    else:
                        took, seconds = block(client, corral)
                    results[name] += took
                    cpu[name] += seconds
            scrape = []
            for _ in range(50):
                began = time.perf_counter()
                client.get("/metrics").raise_for_status()
                scrape.append((time.perf_counter() - began) * 1000)
    finally:
        procs.stop_all()
    print(f"one-token completions, {len(results['plain'])} per condition, demo model")
    for name, took in results.items():
        q = statistics.quantiles(took, n=10)
        per = cpu[name] / len(took) * 1000
        print(
            f"  {name:8} median {statistics.median(took):7.2f} ms  p90 {q[8]:7.2f} ms  "
            f"corral CPU {per:.2f} ms/request"
        )
    ratio = statistics.median(results["watched"]) / statistics.median(results["plain"])
    print(f"  watched / plain median: {ratio:.3f}")
    print(f"  GET /metrics: median {statistics.median(scrape):.2f} ms")
    return 0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
