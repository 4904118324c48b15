"""Where corral's CPU goes: ``.venv/bin/python -m bench.profile [--spy] [--requests N]``.

Measures in one run, as CPU time of the proxy's own process (user + system, children not
counted):

- per proxied request: sequential one-token completions, kept alive, to the fake upstream
  (tests/fake_upstream.py, which answers at once), through corral and through the floor,
  ``bare_relay`` (uvicorn and corral's child client, nothing else), each in front of its own
  fake; with the latency each adds over its fake asked directly;
- per streamed token: 256-token streams from the real llama-server and Gemma 3 270M, through
  corral and through the floor in front of a second llama-server.

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

import psutil

from bench import procs
from bench.client import Conn, long_stream, one_token
from bench.contenders import FAKE, MODEL_A, Corral, FakeCorral, FakeDirect, Setup, ready_port
from bench.run import DEMO, binary, models_folder

TOKENS = 256


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def floor(work: Path, child_port: int, name: str) -> tuple[subprocess.Popen[bytes], Conn]:
    """``bare_relay`` in front of ``child_port``."""
    port = procs.free_port()
    argv = [sys.executable, "-m", "bench.bare_relay", str(port), str(child_port)]
    proc = procs.spawn(argv, work / f"{name}.log")
    ready_port(port, proc, work / f"{name}.log", 60)
    return proc, Conn(f"http://127.0.0.1:{port}")


def per_request(proxy: Conn, pid: int, direct: Conn, count: int) -> tuple[float, float]:
    """(CPU microseconds of ``pid`` per request, p50 ms added over ``direct``), requests
    alternating in blocks of 20 between the proxy and its upstream asked directly."""
    body = one_token(FAKE)
    for _ in range(50):
        proxy.complete(body)
        direct.complete(body)
    through: list[float] = []
    straight: list[float] = []
    spent = 0.0
    for _ in range(count // 20):
        before = cpu_seconds(pid)
        through += [proxy.complete(body) for _ in range(20)]
        spent += cpu_seconds(pid) - before
        straight += [direct.complete(body) for _ in range(20)]
    added = statistics.median(through) - statistics.median(straight)
    return 1e6 * spent / len(through), 1e3 * added


def per_token(proxy: Conn, pid: int, rounds: int = 3) -> float:
    """CPU microseconds of ``pid`` per token relayed, median of ``rounds`` streams."""
    proxy.stream(long_stream(MODEL_A, 8))
    found = []
    for _ in range(rounds):
        before = cpu_seconds(pid)
        got = proxy.stream(long_stream(MODEL_A, TOKENS))
        found.append(1e6 * (cpu_seconds(pid) - before) / got.tokens)
    return statistics.median(found)


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
        floor_proc, floor_conn = floor(work, fake_direct.port, "floor-fake")
        corral_pid = fake_corral.proc.pid
        cpu, added = per_request(fake_corral.conn, corral_pid, own_child, args.requests)
        floor_cpu, floor_added = per_request(
            floor_conn, floor_proc.pid, fake_direct.conn, args.requests
        )
        print(f"per request (fake upstream, {args.requests} sequential):")
        print(f"  corral: {cpu:.0f} us CPU, adds {added:.3f} ms at p50")
        print(
            f"  floor (uvicorn + child client): {floor_cpu:.0f} us CPU, adds {floor_added:.3f} ms"
        )
        if args.spy:
            print(spy_top(corral_pid, 12, fake_corral.conn, work))
        procs.stop(floor_proc)
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
        floor_proc, floor_conn = floor(work, llama_port, "floor-real")
        assert corral.proc is not None
        print(f"per streamed token ({TOKENS}-token streams, real model):")
        print(f"  corral: {per_token(corral.conn, corral.proc.pid):.0f} us CPU")
        print(
            f"  floor (uvicorn + child client): {per_token(floor_conn, floor_proc.pid):.0f} us CPU"
        )
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
