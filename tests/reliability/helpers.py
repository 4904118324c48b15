"""What the reliability tests share: an orphan census, the checks on an answer (its answer, or
a clear error in the OpenAI shape), raw HTTP for bytes an HTTP library refuses to send,
children that play a fault on their first run only (a port taken, a fake's fault flag) or
record what corral sent them, and corral run the ways a fault needs (started and always
stopped, the same instance again, its output on a full disk).

The census finds children by the marker corral sets in their environment (``CORRAL_PARENT``),
so it also finds those whose parent died and that were adopted by init.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from corral.supervisor.runtime.child.strays import PARENT_MARKER
from tests.support import CorralServer, corral_bin, wait_until


def marked(corral_pids: Iterable[int]) -> list[psutil.Process]:
    """Every live process (not a zombie) that one of ``corral_pids`` started, at any depth."""
    wanted = {str(pid) for pid in corral_pids}
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(PARENT_MARKER) in wanted and proc.status() != "zombie":
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def orphans(server: CorralServer) -> list[psutil.Process]:
    """The server's children that no longer sit below it (all of them once it is gone)."""
    try:
        below = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        below = set()
    return [p for p in marked([server.pid]) if p.pid not in below]


def assert_no_orphans(*servers: CorralServer, timeout: float = 10) -> None:
    """Wait (a kill takes a moment to land) until none of ``servers`` left a child behind."""

    def clean() -> bool:
        return not any(orphans(s) for s in servers)

    try:
        wait_until(clean, timeout, "the orphaned children to go")
    except AssertionError:
        left = [(p.pid, p.cmdline()) for s in servers for p in orphans(s)]
        raise AssertionError(f"orphaned children: {left}") from None


def children_per_model(server: CorralServer) -> dict[str, int]:
    """How many of the server's direct children run each fake model (by its ``--name``)."""
    counts: dict[str, int] = {}
    for proc in server.children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            argv = proc.cmdline()
            if "--name" in argv:
                name = argv[argv.index("--name") + 1]
                counts[name] = counts.get(name, 0) + 1
    return counts


def assert_openai_error(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    """``answer`` is an error in the OpenAI envelope (with one of ``statuses``, if given)."""
    if statuses:
        assert answer.status_code in statuses, (answer.status_code, answer.text)
    assert answer.status_code >= 400, answer.text
    return assert_envelope(answer.json(), answer.status_code)


def assert_envelope(body: Any, status: int) -> dict[str, Any]:
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert error.get("code") == status, body
    return error


def assert_answer_shaped(status: int, body: bytes, path: str, where: object) -> None:
    """No 500; an error carries its envelope (OpenAI's, or Ollama's on /api/)."""
    assert status < 500, f"{status} for {where!r}: {body[:300]!r}"
    if status < 400:
        return
    answer = json.loads(body)
    if path.startswith("/api/") and isinstance(answer.get("error"), str):
        return  # Ollama's shape; its clients read `error` as a string
    assert_envelope(answer, status)


def assert_alive(server: CorralServer) -> None:
    assert server.proc is not None and server.proc.poll() is None, "corral died"


def assert_no_injected_header(answer: RawAnswer) -> None:
    names = {name.lower() for name, _ in answer.headers}
    assert "x-injected" not in names, answer.headers
    assert all("\r" not in v and "\n" not in v for _, v in answer.headers), answer.headers


def kill(server: CorralServer) -> None:
    """SIGKILL corral and reap it; its children die with it (the parent-death signal)."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(timeout=10)


class RawAnswer:
    """An HTTP answer parsed from a raw socket: status, headers as sent, body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def raw_request(port: int, request: bytes, timeout: float = 30) -> RawAnswer:
    """Send ``request`` byte for byte (no client-side normalising of paths or headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answer = http.client.HTTPResponse(_Replay(data))  # type: ignore[arg-type]
    answer.begin()
    return RawAnswer(answer.status, list(answer.getheaders()), answer.read())


class _Replay:
    """Just enough of a socket for http.client.HTTPResponse to parse bytes already read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


def port_taken_once(tmp: Path, name: str, argv: list[str]) -> list[str]:
    """A ``cmd`` that runs ``argv`` (which holds ``{port}``), but on its first run with the
    port already taken: the wrapper binds it and keeps it open across exec, so the real
    server's own bind fails with EADDRINUSE and it prints its own error."""
    flag = tmp / f"{name}.first-run"
    flag.touch()
    wrapper = tmp / f"{name}-port-taken.py"
    wrapper.write_text(_PORT_TAKEN, encoding="utf-8")
    return [sys.executable, str(wrapper), str(flag), "{port}", *argv]


_PORT_TAKEN = """\
import os, socket, sys
flag, port, real = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if os.path.exists(flag):
    os.remove(flag)
    holder = socket.create_server(("127.0.0.1", port))
    holder.set_inheritable(True)
    print(f"holding port {port}", file=sys.stderr, flush=True)
os.execv(real[0], real)
"""


def recorder_cmd(tmp: Path) -> tuple[list[str], Path]:
    """A sham child that answers 200 to everything and appends each raw request line it
    gets to a file: what corral really sent, before any server could parse or normalise it."""
    script, seen = tmp / "recorder.py", tmp / "request-lines.txt"
    script.write_text(_RECORDER, encoding="utf-8")
    return [sys.executable, str(script), "{port}", str(seen)], seen


_RECORDER = """\
import socket, sys
port, seen = int(sys.argv[1]), open(sys.argv[2], "ab", buffering=0)
server = socket.create_server(("127.0.0.1", port))
print("server is listening", flush=True)
while True:
    conn, _ = server.accept()
    line = conn.makefile("rb").readline()
    if not line.startswith(b"GET /health "):
        seen.write(line)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
    conn.close()
"""


def same_instance(first: CorralServer, config: Mapping[str, Any], tmp: Path) -> CorralServer:
    """A second corral for the same config file and port: to the reaper, the same instance."""
    again = CorralServer(config, tmp)
    assert again.config_path == first.config_path
    again.port, again.url = first.port, first.url
    again.argv = ["serve", "--config", str(again.config_path), "--port", str(first.port)]
    return again


class FullDiskCorral(CorralServer):
    """corral with stdout and stderr on /dev/full: every log line it writes fails (ENOSPC)."""

    def start(self) -> FullDiskCorral:
        with open("/dev/full", "wb") as full:
            self.proc = subprocess.Popen(
                [corral_bin(), *self.argv], stdout=full, stderr=full, env=self.env
            )
        wait_until(self._healthy, 60, f"corral on port {self.port} to answer /health")
        return self

    def log(self) -> str:
        return "(corral's output went to /dev/full)"
