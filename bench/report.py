"""Showing a run: the table on the console, RESULTS.md and the plot.

Owns the rendering only; the numbers and the verdicts come from ``summary``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.summary import CONTENDERS, Row, verdicts

RATIO_OF = ("router", "corral")
MODELLED = ("1 s poll", "5 s poll")


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _met(row: Row) -> str:
    return "" if row.met is None else ("met" if row.met else "**missed**")


def table(rows: Sequence[Row]) -> list[list[str]]:
    head = ["metric", "unit", *CONTENDERS, *(f"{n}/direct" for n in RATIO_OF), "target", "met"]
    body = [
        [
            r.metric,
            r.unit,
            *(_cell(r.values.get(n), r.digits) for n in CONTENDERS),
            *(_cell(r.ratio(n), 3) for n in RATIO_OF),
            r.target,
            _met(r),
        ]
        for r in rows
    ]
    return [head, *body]


def modelled_table(rows: Sequence[Row]) -> list[list[str]]:
    head = ["metric", "unit", "direct (measured)"]
    for name in MODELLED:
        head += [f"llama-swap, {name}", "/direct"]
    body = []
    for r in rows:
        line = [r.metric, r.unit, _cell(r.values.get("direct"), r.digits)]
        for name in MODELLED:
            line += [_cell(r.values.get(name), r.digits), _cell(r.ratio(name), 3)]
        body.append(line)
    return [head, *body]


def markdown_table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def console_table(cells: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    )


def results_md(
    rows: Sequence[Row], modelled: Sequence[Row], facts: Mapping[str, str], plan: Mapping[str, Any]
) -> str:
    facts_lines = "\n".join(f"- {k}: {v}" for k, v in facts.items() if k != "command")
    plan_line = ", ".join(f"{k} {v}" for k, v in plan.items())
    targets = "\n".join(f"- {line}" for line in verdicts(rows))
    return f"""# corral benchmark results

Produced by `{facts["command"]}`; every row below comes from this one run, the contenders
alternating within each measurement. Re-run it with the same command; `--quick` is a smoke
run and writes elsewhere.

{facts_lines}

Plan: {plan_line}.

## Results

{markdown_table(table(rows))}

![ratios to direct, and idle memory](results.png)

![what each warm request cost over its own llama-server](added.png)

## llama-swap (modelled, not measured)

llama-swap is not run here. Its readiness rule (proxy/process.go: wait 250 ms after the
spawn, then check `/health` every interval until it answers 200) is applied to each of
direct's measured load times (spawn to `/health` 200); the rest of each sample (the request
itself) is kept as measured. The issue states a 1 s interval; the version of process.go read
for this (commit 026ab8d) uses 5 s. Both are shown.

{markdown_table(modelled_table(modelled))}

## Targets for corral

{targets}

Where the time goes for the targets missed, with the profile (py-spy) and a floor to compare
with: [PROFILE.md](PROFILE.md), measured by `.venv/bin/python -m bench.profile --spy`.

## How each row is measured

- All three run the same llama-server binary on the same GGUF file (two hard links,
  `gemma-a.gguf` and `gemma-b.gguf`, for the swap), with `-c {plan.get("context", "?")}`
  and llama-server's defaults otherwise. Requests are `POST /v1/completions` with a
  kept-alive `http.client` connection; concurrency uses aiohttp, one connection per client.
- direct: `llama-server -m FILE --host 127.0.0.1 --port P -c N`. router:
  `llama-server --models-dir D --models-max 1` (it names models by file stem). corral:
  `corral serve` with both files as models in one swap group, so that one runs at a time.
- cold: direct from the spawn (polling `/health` every 10 ms) to the first one-token answer;
  router and corral already running with no model loaded, from the request to the answer.
- warm: one-token completions (same prompt, `cache_prompt` at its default), in blocks of
  20 per contender (the first untimed), the contenders taking turns block by block: a
  llama-server that has just answered keeps its threads spinning for a while and slows
  down any other llama-server answering next on a small machine, so requests taking turns
  one by one would measure that. p50/p99 by nearest rank. Router and corral each run their
  own llama-server child, and two llama-server processes started alike differ by a few ms;
  so within their blocks requests alternate between the contender and its own child asked
  directly, and "added" is the median of the paired differences.
- added (the plot above): each warm request through router or corral, minus the request
  to the same child right beside it; the p99 row is the 99th percentile of those differences.
- cold readiness: corral's own log line per load, from reading llama-server's "listening on
  http" line on its output to the confirming `/health` answer (no polling while it loads).
- stream: a 256-token streamed completion (`ignore_eos`, temperature 0, seed 42), tokens
  divided by the time from sending to the end of the stream; median of the rounds. Proxy
  CPU per token: the contender's own process's CPU time (user + system, not its children)
  over the stream, divided by the tokens relayed; the mean over the rounds (the kernel
  counts it in 10 ms ticks: only the sum over many tokens is fine enough).
- swap: A loaded, then a streamed request for B, until B's first token. For direct, by hand:
  stop A's server, spawn B's, wait for `/health`, ask.
- concurrency: N clients each sending one-token completions back to back; errors are any
  answer but 200. The fake-upstream rows run tests/fake_upstream.py (answers at once)
  directly and behind corral, to isolate corral's own cost; router mode cannot run it.
- relay: `bench/streamer.py`, a fake llama-server that streams 512-token chat answers as fast
  as it can (a write per token, flow control honoured), asked by 1, 8 and 64 raw-socket
  clients on uvloop for 3 s (after 0.5 s to warm up), directly and through corral (a `cmd`
  model); tokens are the `data: {{` events that reached the clients; corral's CPU per token
  is its own process's over the run. Tokens that wait in corral's socket together leave in
  one write, so this row measures the relay where it coalesces, the stream row where it
  cannot (one token per read).
- idle: after one request, wait for the TTL to act (corral: `default_ttl`, then no child;
  direct and router: a second instance with `--sleep-idle-seconds`, until it logs that it
  sleeps), then the resident memory (sum over the process tree) and CPU over a window.
"""


def _short(row: Row) -> str:
    """A bar's label: the metric's name without its explanation, and the unit."""
    head, _, tail = row.metric.partition(":")
    if head == "warm":
        head = "warm " + tail.split()[-1]  # p50 / p99
    head = head.replace(" clients, ", " clients\n").replace(" model", "").replace(" upstream", "")
    return f"{head}\n({row.unit})"


def plot(rows: Sequence[Row], path: Path) -> None:
    """Ratios to direct per metric, and idle memory per contender."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; and never open a window mid-benchmark
    import matplotlib.pyplot as plt

    ratio_rows = [r for r in rows if r.ratios and r.ratio("corral") is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.38
    for i, name in enumerate(RATIO_OF):
        values = [r.ratio(name) or 0.0 for r in ratio_rows]
        xs = [x + (i - 0.5) * width for x in range(len(ratio_rows))]
        left.bar(xs, values, width, label=name)
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_xticks(range(len(ratio_rows)))
    left.set_xticklabels([_short(r) for r in ratio_rows], fontsize=8)
    left.set_ylabel("ratio to direct (same run)")
    left.set_title("ratio to llama-server started directly (s, ms: lower is better; /s: higher)")
    left.legend()
    idle = next((r for r in rows if r.metric.startswith("idle") and r.unit == "MB"), None)
    if idle is not None:
        names = [n for n in CONTENDERS if n in idle.values]
        right.bar(names, [idle.values[n] for n in names], color=["#888", "#1f77b4", "#ff7f0e"])
        right.axhline(80, color="red", linewidth=0.8, linestyle="--")
        right.set_title("idle after TTL: resident MB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_added(added: Mapping[str, Sequence[float]], path: Path) -> None:
    """Each warm request's milliseconds over its own llama-server, sorted (a CDF), per
    contender that runs one, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(9, 4.5))
    for name, samples in added.items():
        ordered = sorted(samples)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axis.plot(ordered, fractions, label=f"{name} ({len(ordered)} requests)")
    axis.axvline(0.7, color="green", linewidth=0.8, linestyle="--", label="p50 target 0.7 ms")
    axis.axvline(2.0, color="red", linewidth=0.8, linestyle="--", label="p99 target 2 ms")
    axis.axhline(0.5, color="gray", linewidth=0.5)
    axis.axhline(0.99, color="gray", linewidth=0.5)
    axis.set_xlabel("ms added over its own llama-server (paired requests)")
    axis.set_ylabel("fraction of requests at or below")
    axis.set_title("warm one-token completions: what the proxy adds per request")
    axis.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
