"""What socket activation costs: the first answer from a stopped corral through systemd's
socket, against the same first answer from a corral already running and idle.

Run: ``.venv/bin/python -m bench.socket_activation [--rounds N]``. Two cases, the arms
alternating within each round:

- **cold model**: the demo model (real llama-server, Gemma 3 270M) not loaded in either arm:
  the answer waits for its load both ways;
- **loaded elsewhere**: the model already loaded in a llama-server that corral reaches as a
  peer (a child cannot outlive an exited corral, so "loaded" means loaded outside it).

``systemd-socket-activate`` stands in for PID 1: it holds the socket and execs corral on the
first connection, as a ``.socket`` unit does. Each sample opens a fresh connection and times
a one-token completion to its last byte. Also: ``/health`` alone (the start-up itself), the
running corral's idle RSS (the activated one, after ``idle_exit``, has none: it exited), and
``python -X importtime`` of the activated start, whose top items say where the time goes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from bench import procs
from bench.client import one_token
from bench.run import DEMO, binary

MODEL = "gemma"
ACTIVATE = shutil.which("systemd-socket-activate") or "systemd-socket-activate"
CORRAL = str(Path(sys.executable).with_name("corral"))


def timed(port: int, path: str, body: dict[str, Any] | None) -> float:
    """Seconds from opening a connection to the last byte of the answer (200 only)."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    if body is None:
        conn.request("GET", path)
    else:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    took = time.perf_counter() - began
    conn.close()
    if answer.status != 200:
        raise RuntimeError(f"{path}: {answer.status} {data[:300]!r}")
    return took


def config_file(work: Path, name: str, peer: str | None) -> Path:
    """A corral config: the demo model as a child, or as a peer's model when ``peer``."""
    # Short lives, so that each activated arm ends by its own idle exit.
    config: dict[str, Any] = {"llama_server": binary(), "idle_exit": 1, "default_ttl": 1}
    if peer is None:
        config["models"] = [
            {"name": MODEL, "path": str(DEMO), "chat_template": "gemma", "context_size": 1024}
        ]
    else:
        config["peers"] = {"far": {"url": peer, "models": [MODEL]}}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def activated(config: Path, work: Path, ask: Callable[[int], float], trace: bool = False) -> float:
    """One first answer through the socket of a stopped corral; waits for its idle exit."""
    port = procs.free_port()
    log = work / f"activated-{port}.log"
    python = [sys.executable, "-X", "importtime"] if trace else [sys.executable]
    argv = [ACTIVATE, f"--listen=127.0.0.1:{port}", *python, CORRAL, "serve", "--config"]
    proc = procs.spawn([*argv, str(config)], log)
    try:
        procs.wait_for(lambda: "Listening on" in log.read_text(), 10, "the socket")
        took = ask(port)
        code = proc.wait(timeout=120)  # idle_exit: 1, after the model's ttl
        if code != 0:
            raise RuntimeError(f"activated corral exited {code}: see {log}")
        return took
    finally:
        procs.stop(proc)


def running(config: Path, work: Path, ask: Callable[[int], float]) -> tuple[float, int]:
    """The same first answer from a corral started beforehand and idle; and its RSS."""
    port = procs.free_port()
    argv = [CORRAL, "serve", "--config", str(config), "--port", str(port), "--idle-exit", "0"]
    proc = procs.spawn(argv, work / f"running-{port}.log")
    try:
        # Alive too: on a shared machine another server may take the port first.
        procs.wait_for(lambda: _alive(proc) and _healthy(port), 60, "corral's /health")
        rss = psutil.Process(proc.pid).memory_info().rss
        took = ask(port)
        if not _alive(proc):
            raise RuntimeError(f"corral on port {port} exited: another server answered")
        return took, rss
    finally:
        procs.stop(proc)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"corral exited {proc.returncode}: {proc.args!r}")
    return True


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="corral-bench-socket-"))
    completion = one_token(MODEL)
    peer_port = procs.free_port()
    peer = procs.spawn(
        [binary(), "-m", str(DEMO), "--host", "127.0.0.1", "--port", str(peer_port), "-c", "1024"],
        work / "peer.log",
    )
    results: dict[str, dict[str, list[float]]] = {}
    rss: list[int] = []
    try:
        procs.wait_for(lambda: _healthy(peer_port), 120, "the peer llama-server")
        cases = {
            "/health": (config_file(work, "cold", None), None, "/health"),
            "cold model": (config_file(work, "cold", None), completion, "/v1/completions"),
            "loaded elsewhere": (
                config_file(work, "peer", f"http://127.0.0.1:{peer_port}"),
                completion,
                "/v1/completions",
            ),
        }
        for _ in range(args.rounds):
            for case, (config, body, path) in cases.items():

                def ask(port: int, path: str = path, body: Any = body) -> float:
                    return timed(port, path, body)

                row = results.setdefault(case, {"activated": [], "running": []})
                row["activated"].append(activated(config, work, ask))
                took, held = running(config, work, ask)
                row["running"].append(took)
                rss.append(held)
        traced = work / "trace"
        traced.mkdir()
        activated(cases["/health"][0], traced, lambda port: timed(port, "/health", None), True)
    finally:
        procs.stop(peer)
    print(f"socket activation, {args.rounds} rounds, median ms (logs: {work})")
    print(f"{'first answer':<18}{'activated':>11}{'running':>10}{'added':>9}")
    for case, row in results.items():
        a, r = statistics.median(row["activated"]), statistics.median(row["running"])
        print(f"{case:<18}{a * 1000:>11.0f}{r * 1000:>10.0f}{(a - r) * 1000:>9.0f}")
    print(f"idle RSS: running {statistics.median(rss) / 2**20:.0f} MiB, activated 0 (exited)")
    print("python -X importtime of the activated start, top by cumulative ms:")
    for line in top_imports(next(traced.glob("activated-*.log"))):
        print(f"  {line}")
    return 0


def top_imports(log: Path, count: int = 12) -> list[str]:
    """The slowest imports of a ``-X importtime`` log: cumulative ms, self ms, module;
    only modules imported from corral's own code or at the top (nesting level 0 or 1)."""
    rows: list[tuple[int, int, str]] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1 or name.strip().startswith("corral."):
            rows.append((int(cumulative_us), int(self_us), name.strip()))
    rows.sort(reverse=True)
    return [f"{c / 1000:7.1f} {s / 1000:6.1f}  {n}" for c, s, n in rows[:count]]


if __name__ == "__main__":
    sys.exit(main())
