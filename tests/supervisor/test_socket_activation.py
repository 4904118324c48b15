"""`corral serve` socket-activated (systemd-socket-activate as PID 1), and its idle exit.

The fake upstream plays the models here; tests/e2e/test_socket_activation_e2e.py does the
first request and the no-survivor check with the real llama-server.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.supervisor.activation import Activated, needs_activate
from tests.support import (
    CorralServer,
    fake_argv,
    fake_cmd,
    free_port,
    pids_gone,
    read_response,
    wait_until,
)

pytestmark = needs_activate


def test_the_first_request_is_answered_on_inherited_ipv4_and_ipv6_sockets(
    tmp_path: Path,
) -> None:
    config = {"models": [{"name": "m", "cmd": fake_cmd("m")}]}
    args = ("--host", "0.0.0.0", "--port", "9")
    with Activated(config, tmp_path, ("127.0.0.1", "::1"), args) as corral:
        six = httpx.get(f"http://[::1]:{corral.port}/health", timeout=60)
        four = httpx.post(
            f"{corral.url}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=60
        )
        assert (six.status_code, four.status_code) == (200, 200), corral.log()
        assert four.json()["choices"][0]["text"].startswith("m:")
        # Still loopback only: the Host check guards the inherited sockets too.
        rebound = httpx.get(f"{corral.url}/health", headers={"host": "evil.example"}, timeout=5)
        assert rebound.status_code == 403
    log = corral.log()
    assert "--host/--port ignored: serving on the sockets systemd passed" in log
    assert f"127.0.0.1:{corral.port}, [::1]:{corral.port} (sockets from systemd)" in log


def test_corral_exits_0_after_idle_exit_and_no_child_outlives_it(tmp_path: Path) -> None:
    config = {"idle_exit": 1, "models": [{"name": "m", "cmd": fake_cmd("m"), "ttl": 1}]}
    with Activated(config, tmp_path) as corral:
        answer = httpx.post(
            f"{corral.url}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=60
        )
        assert answer.status_code == 200, corral.log()
        child = httpx.get(f"{corral.url}/running", timeout=5).json()["running"][0]["pid"]
        # The listening socket's variables stop at corral: no child believes it was activated.
        assert "LISTEN_FDS" not in psutil.Process(child).environ()
        assert corral.wait_exit(60) == 0, corral.log()
    assert pids_gone([child])
    assert "idle for 1 s: no model loaded, no connection (idle_exit); exiting" in corral.log()


@pytest.fixture
def slow_peer(tmp_path: Path) -> Iterator[str]:
    """A fake upstream serving on its own (a peer): 8 tokens, 0.4 s each, no child of corral."""
    port = free_port()
    argv = fake_argv("--name", "far", "--tokens", "8", "--token-delay", "0.4")(port)
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as peer:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), 30, "the peer's /health")
        yield url
        peer.terminate()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_request_in_flight_is_never_cut_by_the_idle_exit(tmp_path: Path, slow_peer: str) -> None:
    # No child runs in corral (a peer answers): only the open connection keeps it up, for
    # three times idle_exit.
    config = {"idle_exit": 1, "peers": {"far": {"url": slow_peer, "models": ["far"]}}}
    with Activated(config, tmp_path) as corral:
        body = {"model": "far", "prompt": "x", "stream": True}
        with httpx.stream("POST", f"{corral.url}/v1/completions", json=body, timeout=60) as sse:
            text = "".join(sse.iter_text())
        assert "data: [DONE]" in text, corral.log()
        assert text.count('"text"') >= 8
        assert corral.wait_exit(60) == 0, corral.log()


def test_a_connection_accepted_as_corral_stops_gets_its_answer(tmp_path: Path) -> None:
    # The idle exit stops listening and then the server: a connection accepted in between
    # has sent nothing yet. uvicorn closed such a connection unanswered.
    with CorralServer({"models": []}, tmp_path) as corral:
        client = socket.create_connection(("127.0.0.1", corral.port))
        mine = client.getsockname()[1]
        wait_until(
            lambda: any(c.laddr.port == corral.port and c.raddr and c.raddr.port == mine
                        for c in psutil.Process(corral.pid).net_connections()),
            10,
            "corral to accept the connection",
        )  # fmt: skip
        corral.signal(signal.SIGTERM)
        wait_until(lambda: not _connects(corral.port), 10, "corral to stop listening")
        client.sendall(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        answer = read_response(client)
        client.close()
        assert answer.startswith("HTTP/1.1 200"), answer
        assert "connection: close" in answer.lower()
        assert corral.proc is not None
        corral.proc.wait(timeout=20)  # SIGTERM's own exit status, as uvicorn re-raises it


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_the_connection_limits_hold_on_inherited_sockets(tmp_path: Path) -> None:
    config = {"max_connections": 1, "header_timeout": 1, "models": []}
    with Activated(config, tmp_path) as corral:
        # The silent one starts corral; both wait in the socket's queue, accepted in order.
        silent = socket.create_connection(("127.0.0.1", corral.port))
        refused = httpx.get(f"{corral.url}/health", timeout=60)
        assert refused.status_code == 503, refused.text
        assert "max_connections" in refused.text
        silent.settimeout(30)
        assert silent.recv(1) == b""  # header_timeout closed the silent one
        silent.close()
