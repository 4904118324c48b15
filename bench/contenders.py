"""The three contenders: llama-server started directly, llama.cpp's router mode, and corral.

Owns how each is started and stopped, and the two measurements whose procedure differs per
contender: a cold start (for direct: from the spawn; for the others: from the request, with
no model loaded) and a swap (model A loaded, then a request for B, until B's first token).
Every contender runs the same llama-server binary on the same file with the same context
size. What is measured and in which order lives in ``measure``.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import procs
from bench.client import Conn, long_stream, one_token

MODEL_A = "gemma-a"
MODEL_B = "gemma-b"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setup:
    binary: str  # llama-server
    models: Path  # holds MODEL_A.gguf and MODEL_B.gguf (the same file, linked twice)
    work: Path  # logs and configs
    context: int = 1024
    ttl: int = 10  # corral's default_ttl; --sleep-idle-seconds for the idle llama-servers


@dataclass
class Timed:
    total: float  # seconds to the first completed answer (cold) or B's first token (swap)
    load: float | None = None  # spawn to /health 200, where the harness sees it (direct only)


def health(port: int) -> int | None:
    """The status of ``GET /health``, or None while nothing listens."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def ready_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """Wait (polling every 10 ms) until ``/health`` on ``port`` answers 200."""

    def check() -> bool:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
        return health(port) == 200

    procs.wait_for(check, timeout, f"/health on port {port}")
    return port


@dataclass
class Contender:
    setup: Setup
    name: str = "?"
    role: str = ""  # tells apart the logs of a second instance (the idle one)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    conn: Conn = field(init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.setup.work / f"{self.name}{'-' + self.role if self.role else ''}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.port = procs.free_port()
        self.proc = procs.spawn(self.argv(), self.log, self.env())
        ready_port(self.port, self.proc, self.log, 120)
        self.conn = Conn(self.url)

    def env(self) -> dict[str, str] | None:
        return None

    def stop(self) -> None:
        if self.proc is not None:
            self.conn.close()
            procs.stop(self.proc)
            self.proc = None

    def ready(self, model: str = MODEL_A) -> None:
        """Make sure ``model`` is loaded and the connection is fresh; not timed."""
        self.conn.reset()
        self.conn.complete(one_token(model))

    def unload(self) -> None:
        raise NotImplementedError

    def cold(self) -> Timed:
        self.unload()
        self.conn.reset()
        return Timed(self.conn.complete(one_token(MODEL_A)))

    def swap(self) -> Timed:
        self.ready(MODEL_A)
        return Timed(self.conn.stream(long_stream(MODEL_B, 4)).first)

    def asleep(self) -> bool:
        """True once this contender's TTL (or llama-server's sleep) has acted."""
        raise NotImplementedError

    def child(self) -> Conn | None:
        """A connection straight to the llama-server this contender runs, if it runs one:
        the same process, asked without the contender in between."""
        assert self.proc is not None
        for process in procs.tree(self.proc.pid)[1:]:
            argv = process.cmdline()
            if "--port" in argv:
                # corral's children demand a key that only corral knows; the harness runs
                # as the same user, so it reads it where corral put it (the environment).
                key = process.environ().get("LLAMA_API_KEY")
                return Conn(f"http://127.0.0.1:{argv[argv.index('--port') + 1]}", key=key)
        return None

    def wait_unloaded(self) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        procs.wait_for(lambda: len(procs.tree(pid)) == 1, 60, f"{self.name} to have no child")


class Direct(Contender):
    """llama-server with model A, started by hand; for cold and swap, a fresh one each time."""

    def __init__(self, setup: Setup, extra: tuple[str, ...] = (), role: str = "") -> None:
        super().__init__(setup, "direct", role=role)
        self.extra = extra

    def server_argv(self, model: str, port: int) -> list[str]:
        path = self.setup.models / f"{model}.gguf"
        return [
            *(self.setup.binary, "-m", str(path), "--host", "127.0.0.1", "--port", str(port)),
            *("-c", str(self.setup.context), *self.extra),
        ]

    def argv(self) -> list[str]:
        return self.server_argv(MODEL_A, self.port)

    def spawn(self, model: str) -> tuple[subprocess.Popen[bytes], Conn, float, float]:
        """A fresh server for ``model``: (process, connection, spawn time, ready time)."""
        port = procs.free_port()
        log = self.setup.work / f"{self.name}-{model}-{port}.log"
        start = time.perf_counter()
        proc = procs.spawn(self.server_argv(model, port), log)
        ready_port(port, proc, log, 120)
        return proc, Conn(f"http://127.0.0.1:{port}"), start, time.perf_counter()

    def cold(self) -> Timed:
        proc, conn, start, ready = self.spawn(MODEL_A)
        try:
            conn.complete(one_token(MODEL_A))
            return Timed(time.perf_counter() - start, ready - start)
        finally:
            conn.close()
            procs.stop(proc)

    def swap(self) -> Timed:
        """By hand: stop A's server, start B's, ask B; until B's first token."""
        old, conn, _, _ = self.spawn(MODEL_A)
        conn.complete(one_token(MODEL_A))
        conn.close()
        start = time.perf_counter()
        procs.stop(old)
        new, conn, spawned, ready = self.spawn(MODEL_B)
        try:
            sent = time.perf_counter()
            first = sent - start + conn.stream(long_stream(MODEL_B, 4)).first
            return Timed(first, ready - spawned)
        finally:
            conn.close()
            procs.stop(new)

    def asleep(self) -> bool:
        return "entering sleeping state" in self.log.read_text(errors="replace")


class Router(Contender):
    """``llama-server --models-dir D --models-max 1``: it names models by file stem."""

    def __init__(self, setup: Setup, extra: tuple[str, ...] = (), role: str = "") -> None:
        super().__init__(setup, "router", role=role)
        self.extra = extra

    def argv(self) -> list[str]:
        return [
            *(self.setup.binary, "--models-dir", str(self.setup.models), "--models-max", "1"),
            *("--host", "127.0.0.1", "--port", str(self.port), "-c", str(self.setup.context)),
            *self.extra,
        ]

    def unload(self) -> None:
        for model in (MODEL_A, MODEL_B):
            self.conn.reset()
            self.conn.call("POST", "/models/unload", {"model": model})
        self.wait_unloaded()

    def asleep(self) -> bool:
        return "entering sleeping state" in self.log.read_text(errors="replace")


class Corral(Contender):
    """``corral serve``: A and B in one swap group, so that one runs at a time, as in the
    router with ``--models-max 1``."""

    def __init__(self, setup: Setup, name: str = "corral") -> None:
        super().__init__(setup, name)

    def config(self) -> dict[str, object]:
        models = [
            {"name": m, "path": f"{m}.gguf", "context_size": self.setup.context, "group": "pair"}
            for m in (MODEL_A, MODEL_B)
        ]
        return {
            "models_path": str(self.setup.models),
            "llama_server": self.setup.binary,
            "default_ttl": self.setup.ttl,
            "groups": {"pair": {"swap": True}},
            "models": models,
        }

    def argv(self) -> list[str]:
        path = self.setup.work / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        corral = Path(sys.executable).with_name("corral")
        return [str(corral), "serve", "--config", str(path), "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        # The config names everything; the seed's variables must not override it.
        drop = {"LLAMA_CPP_BIN", "MODELS_PATH", "HOST", "PORT", "MODEL_TTL"}
        return {k: v for k, v in os.environ.items() if k not in drop}

    def unload(self) -> None:
        self.conn.reset()
        self.conn.call("POST", "/unload")
        self.wait_unloaded()

    def asleep(self) -> bool:
        """After the TTL: corral alone, no child."""
        assert self.proc is not None
        return len(procs.tree(self.proc.pid)) == 1


FAKE = "fake"


def fake_argv(port: str) -> list[str]:
    """The test suite's fake llama-server: answers at once, so only the proxy costs time."""
    upstream = REPO / "tests" / "fake_upstream.py"
    return [sys.executable, str(upstream), "--port", port, "--name", FAKE]


class FakeDirect(Contender):
    def __init__(self, setup: Setup, name: str = "direct-fake") -> None:
        super().__init__(setup, name)

    def argv(self) -> list[str]:
        return fake_argv(str(self.port))


class FakeCorral(Corral):
    def __init__(self, setup: Setup, name: str = "corral-fake") -> None:
        super().__init__(setup, name)

    def config(self) -> dict[str, object]:
        return {"default_ttl": 0, "models": [{"name": FAKE, "cmd": fake_argv("{port}")}]}
