"""Where corral's CPU goes: ``.venv/bin/python -m bench.profile [--spy] [--requests N]``.

Measures in one run, as CPU time of the proxy's own process (user + system, children not
counted):

- per proxied request: sequential one-token completions, kept alive, to the fake upstream
  (tests/fake_upstream.py, which answers at once), through corral and through the floor,
  ``bare_relay`` (uvicorn and corral's child client, nothing else), each in front of its own
  fake; with the latency each adds over its fake asked directly;
- per streamed token: 900-token streams from the real llama-server and Gemma 3 270M (one
  read and one write per token), through corral, llama.cpp's C++ router, the floor on
  uvicorn and on granian (when installed), and ``splice_relay`` (bytes copied from socket
  to socket, no HTTP: the limit of a Python relay), the others in front of one more
  llama-server.

With ``--spy``, py-spy (on PATH, or beside this Python) samples corral during the requests
and the functions holding the most samples are printed: the profile behind what
``bench/RESULTS.md`` misses. Every process it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import floors, procs
from bench.client import Conn, long_stream, one_token
from bench.contenders import (
    FAKE,
    MODEL_A,
    Corral,
    FakeCorral,
    FakeDirect,
    Router,
    Setup,
    ready_port,
)
from bench.run import DEMO, binary, models_folder
from bench.summary import percentile

TOKENS = 900  # one read and one write per token; 3 streams: 2,700 ticks' worth of tokens


def floor(
    work: Path, child_port: int, name: str, server: str = "uvicorn"
) -> tuple[subprocess.Popen[bytes], Conn]:
    """``floors.floor`` on ``server``, and a connection to it."""
    proc, port = floors.floor(work, child_port, name, server)
    return proc, Conn(f"http://127.0.0.1:{port}")


def per_request(
    proxy: Conn, pid: int, direct: Conn, count: int, workers: bool = False
) -> tuple[float, float, float]:
    """(CPU microseconds of ``pid`` per request (``workers``: its tree's), p50 and p99 ms
    added over ``direct``), requests alternating in blocks of 20 between the proxy and its
    upstream asked directly."""

    def cpu() -> float:
        return (
            sum(procs.cpu_seconds(p.pid) for p in procs.tree(pid))
            if workers
            else procs.cpu_seconds(pid)
        )

    body = one_token(FAKE)
    for _ in range(50):
        proxy.complete(body)
        direct.complete(body)
    through: list[float] = []
    straight: list[float] = []
    spent = 0.0
    for _ in range(count // 20):
        before = cpu()
        through += [proxy.complete(body) for _ in range(20)]
        spent += cpu() - before
        straight += [direct.complete(body) for _ in range(20)]
    added = statistics.median(through) - statistics.median(straight)
    added99 = percentile(through, 99) - percentile(straight, 99)
    return 1e6 * spent / len(through), 1e3 * added, 1e3 * added99


def per_token(proxy: Conn, pid: int, rounds: int = 3, workers: bool = False) -> float:
    """CPU microseconds of ``pid`` (children not counted: the router's and corral's
    llama-servers generate, they relay nothing; ``workers``: granian's, which relay, are)
    per token relayed, over ``rounds`` streams."""

    def spent() -> float:
        pids = [p.pid for p in procs.tree(pid)] if workers else [pid]
        return sum(procs.cpu_seconds(one) for one in pids)

    proxy.reset()
    proxy.stream(long_stream(MODEL_A, 8))
    total, tokens = 0.0, 0
    for _ in range(rounds):
        proxy.reset()  # llama-server's own keep-alive may have closed it
        before = spent()
        got = proxy.stream(long_stream(MODEL_A, TOKENS))
        total += spent() - before
        tokens += got.tokens
    return 1e6 * total / tokens


def spy_top(pid: int, seconds: float, keep_busy: Conn, out: Path, shown: int = 25) -> str:
    """Sample ``pid`` with py-spy while ``keep_busy`` sends requests; the top functions."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = out / "spy.txt"
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(raw)]
    argv += ["--duration", str(int(seconds)), "--rate", "500", "--nonblocking"]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + seconds + 1
    while time.monotonic() < end:
        keep_busy.complete(one_token(FAKE))
    recorder.wait(timeout=60)
    return top_functions(raw.read_text(), shown)


def top_functions(collapsed: str, shown: int) -> str:
    """py-spy's collapsed stacks as two lists: most samples held anywhere in the stack
    (inclusive) and as the innermost Python frame (self)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        names = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        names = [re.sub(r"\(.*(site-packages|corral)/", "(", n) for n in names]
        for name in set(names):
            inclusive[name] += samples
        own[names[-1]] += samples
    lines = [f"{total} samples; inclusive:"]
    lines += [f"  {100 * n / total:5.1f} % {name}" for name, n in inclusive.most_common(shown)]
    lines += ["self (innermost Python frame; native code counts for its caller):"]
    lines += [f"  {100 * n / total:5.1f} % {name}" for name, n in own.most_common(shown)]
    return "\n".join(lines)


def _servers() -> list[str]:
    """The floors to measure: uvicorn, granian where installed, then splice_relay."""
    granian = shutil.which("granian") or Path(sys.executable).with_name("granian").exists()
    return ["uvicorn", *(["granian"] if granian else []), "splice"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000, help="sequential requests each")
    p.add_argument("--spy", action="store_true", help="sample corral with py-spy")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="corral-profile-"))
    setup = Setup(binary(), models_folder(DEMO, work), work, ttl=600)
    try:
        fake_corral, fake_direct = FakeCorral(setup), FakeDirect(setup)
        for contender in (fake_corral, fake_direct):
            contender.start()
            contender.ready(FAKE)
        assert fake_corral.proc is not None
        own_child = fake_corral.child()
        assert own_child is not None
        corral_pid = fake_corral.proc.pid
        cpu, added, added99 = per_request(fake_corral.conn, corral_pid, own_child, args.requests)
        print(f"per request (fake upstream, {args.requests} sequential):")
        print(f"  corral: {cpu:.0f} us CPU, adds {added:.3f} ms at p50, {added99:.3f} at p99")
        for server in _servers()[:-1]:  # splice_relay cannot route a request
            floor_proc, floor_conn = floor(work, fake_direct.port, f"floor-fake-{server}", server)
            cpu, added, added99 = per_request(
                floor_conn, floor_proc.pid, fake_direct.conn, args.requests, server == "granian"
            )
            print(
                f"  floor on {server} (+ child client): {cpu:.0f} us CPU, adds {added:.3f} ms"
                f" at p50, {added99:.3f} at p99"
            )
            procs.stop(floor_proc)
        if args.spy:
            print(spy_top(corral_pid, 12, fake_corral.conn, work))
        fake_corral.stop()
        fake_direct.stop()

        corral = Corral(setup)
        corral.start()
        corral.ready(MODEL_A)
        llama_port = procs.free_port()
        model = str(setup.models / f"{MODEL_A}.gguf")
        argv = [setup.binary, "-m", model, "--port", str(llama_port), "-c", str(setup.context)]
        llama = procs.spawn(argv, work / "llama.log")
        ready_port(llama_port, llama, work / "llama.log", 120)
        assert corral.proc is not None
        print(f"per streamed token ({TOKENS}-token streams, real model, 3 each):")
        print(f"  corral: {per_token(corral.conn, corral.proc.pid):.0f} us CPU")
        corral.stop()
        router = Router(setup)
        router.start()
        router.ready(MODEL_A)
        assert router.proc is not None
        print(f"  llama.cpp's router (C++): {per_token(router.conn, router.proc.pid):.0f} us CPU")
        router.stop()
        for server in _servers():
            floor_proc, floor_conn = floor(work, llama_port, f"floor-real-{server}", server)
            shown = "splice_relay (no HTTP)" if server == "splice" else f"floor on {server}"
            cpu = per_token(floor_conn, floor_proc.pid, workers=server == "granian")
            print(f"  {shown}: {cpu:.0f} us CPU")
            procs.stop(floor_proc)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
