"""What is measured, and in which order: every measurement alternates the contenders.

Owns the procedure of each row: cold starts, warm one-token latency, streaming rate, swaps,
concurrent clients and the idle footprint, each returning raw samples per contender. Each
iteration starts with a different contender, so that none always runs first (after a quiet
spell) or last; the warm requests take turns one at a time. Turning samples into
medians and ratios is ``report``'s job.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import procs
from bench.client import Load, RequestFailed, hammer, long_stream, one_token
from bench.contenders import MODEL_A, Contender

log = logging.getLogger("bench")

Samples = dict[str, list[float]]
T = TypeVar("T")


#: Per contender, the rounds that failed once and were measured again (``retried``): shown
#: in the results, never hidden. A second failure in a row ends the run.
RETRIED: dict[str, int] = {}


def rotated(items: Sequence[T], turn: int) -> list[T]:
    cut = turn % len(items)
    return [*items[cut:], *items[:cut]]


def retried(contender: Contender, step: Callable[[], T]) -> T:
    """``step`` once more when it fails once: a round of a contender that went wrong for a
    moment (llama.cpp's router answering "model ... is not running" while it swaps), counted
    in ``RETRIED``."""
    try:
        return step()
    except RequestFailed as exc:
        RETRIED[contender.name] = RETRIED.get(contender.name, 0) + 1
        log.warning("%s failed once, measuring the round again: %s", contender.name, exc)
        return step()


def cold(contenders: Sequence[Contender], rounds: int) -> tuple[Samples, Samples]:
    """(seconds to the first answer, direct's spawn-to-ready seconds) per contender."""
    totals: Samples = {c.name: [] for c in contenders}
    loads: Samples = {c.name: [] for c in contenders}
    for turn in range(rounds):
        for c in rotated(contenders, turn):
            result = retried(c, c.cold)
            totals[c.name].append(result.total)
            if result.load is not None:
                loads[c.name].append(result.load)
            log.info("cold %d/%d %s: %.3f s", turn + 1, rounds, c.name, result.total)
    return totals, loads


def warm(contenders: Sequence[Contender], requests: int, block: int = 20) -> Samples:
    """Seconds per one-token completion, in blocks of ``block`` per contender, the
    contenders taking turns block by block.

    Blocks, not single requests in turn: llama.cpp's threads keep spinning for a while
    after an answer (``--poll``), and on a small machine they then slow down whichever other
    llama-server answers next; a block asks one process only, as one user would. Its first
    request is not timed. For a contender that runs its own llama-server (router, corral),
    the block alternates between the contender and that same child asked directly (series
    ``<name> child``): two llama-server processes started alike differ by milliseconds, so
    what a contender adds is only seen against its own child.
    """
    latencies: Samples = {}
    for turn in range(max(1, requests // block)):
        for c in rotated(contenders, turn):
            c.ready(MODEL_A)  # loads it again if its TTL acted meanwhile; not timed
            pairs = [(c.name, c.conn)]
            child = c.child()  # found anew: a reload puts it on another port
            if child is not None:
                child.complete(one_token(MODEL_A))
                pairs.append((f"{c.name} child", child))
            for i in range(block):
                for name, conn in pairs if i % 2 else reversed(pairs):
                    latencies.setdefault(name, []).append(conn.complete(one_token(MODEL_A)))
            if child is not None:
                child.close()
    for name, samples in latencies.items():
        log.info("warm %s: %d requests", name, len(samples))
    return latencies


def stream(contenders: Sequence[Contender], rounds: int, tokens: int) -> tuple[Samples, Samples]:
    """(tokens per second over a whole streamed completion of ``tokens`` tokens; for a
    contender in front of its own llama-server, its own process's CPU microseconds per token
    relayed) per contender."""
    rates: Samples = {c.name: [] for c in contenders}
    cpu: Samples = {}
    for turn in range(rounds):
        for c in rotated(contenders, turn):
            c.ready(MODEL_A)
            assert c.proc is not None
            before = procs.cpu_seconds(c.proc.pid)  # the contender, not its children
            got = c.conn.stream(long_stream(MODEL_A, tokens))
            spent = procs.cpu_seconds(c.proc.pid) - before
            if got.tokens != tokens:
                raise RuntimeError(f"stream {c.name}: {got.tokens} tokens, asked for {tokens}")
            rates[c.name].append(got.tokens / got.total)
            if _runs_a_child(c):  # direct's own CPU is the generation itself
                cpu.setdefault(c.name, []).append(1e6 * spent / got.tokens)
            log.info("stream %d/%d %s: %.1f tokens/s", turn + 1, rounds, c.name, rates[c.name][-1])
    return rates, cpu


def _runs_a_child(contender: Contender) -> bool:
    child = contender.child()
    if child is None:
        return False
    child.close()
    return True


#: corral's log line for a load that ended with llama-server's ready line (runtime.child.process).
_READY = re.compile(r"ready \S+ in \d+ ms \(([\d.]+) ms after its ready line\)")


def after_ready_line(log_file: Path) -> list[float]:
    """Milliseconds from llama-server's "listening" line to corral's readiness, per load,
    as corral logged them."""
    return [float(m.group(1)) for m in _READY.finditer(log_file.read_text(errors="replace"))]


def swap(contenders: Sequence[Contender], rounds: int) -> tuple[Samples, Samples]:
    """(seconds from a request for B, while A is loaded, to B's first token; direct's
    spawn-to-ready seconds of B) per contender."""
    times: Samples = {c.name: [] for c in contenders}
    loads: Samples = {c.name: [] for c in contenders}
    for turn in range(rounds):
        for c in rotated(contenders, turn):
            result = retried(c, c.swap)
            times[c.name].append(result.total)
            if result.load is not None:
                loads[c.name].append(result.load)
            log.info("swap %d/%d %s: %.3f s", turn + 1, rounds, c.name, result.total)
    return times, loads


def concurrency(
    contenders: Sequence[Contender], model: str, clients: Sequence[int], each: int, rounds: int
) -> dict[str, dict[int, list[Load]]]:
    """For each client count, ``rounds`` bursts of ``clients`` x ``each`` completions."""
    loads: dict[str, dict[int, list[Load]]] = {c.name: {n: [] for n in clients} for c in contenders}
    for n in clients:
        for turn in range(rounds):
            for c in rotated(contenders, turn):
                c.ready(model)
                got = hammer(f"{c.url}/v1/completions", one_token(model), n, each)
                loads[c.name][n].append(got)
                log.info(
                    "concurrency %d clients %s: %.1f req/s, %d errors %s",
                    n,
                    c.name,
                    got.per_second,
                    got.errors,
                    got.first_error,
                )
    return loads


@dataclass
class Idle:
    rss_mb: float
    cpu_percent: float
    children: int
    waited: float  # seconds from the last request until it was idle


def idle(contenders: Sequence[Contender], ttl: float, window: float) -> dict[str, Idle]:
    """Footprint after the TTL: one request each, wait for each to be idle, then sample.

    Each contender's ``asleep`` says when its TTL has acted: corral has no child left; a
    llama-server started with ``--sleep-idle-seconds`` logs that it sleeps.
    """
    started: dict[str, float] = {}
    for c in contenders:
        c.ready(MODEL_A)
        c.conn.close()  # a kept-alive connection is not idleness's business
        started[c.name] = time.monotonic()
    found: dict[str, Idle] = {}
    for c in contenders:
        procs.wait_for(c.asleep, ttl + 60, f"{c.name} to go idle", every=0.1)
        waited = time.monotonic() - started[c.name]
        assert c.proc is not None
        rss, cpu, children = procs.footprint(c.proc.pid, window)
        found[c.name] = Idle(rss, cpu, children, waited)
        log.info("idle %s: %.1f MB, %.2f%% CPU, %d children", c.name, rss, cpu, children)
    return found
