"""The floors corral is measured against (``bench.profile``, ``bench.relay_rate``).

Owns starting one: ``bare_relay`` (an ASGI app and corral's child client, nothing else) on
uvicorn or granian, or ``splice_relay`` (bytes copied socket to socket, no HTTP), in front
of a child's port. What is measured through them is the callers'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import procs
from bench.contenders import ready_port


def floor(
    work: Path, child_port: int, name: str, server: str = "uvicorn"
) -> tuple[subprocess.Popen[bytes], int]:
    """``bare_relay`` on ``server`` (uvicorn or granian), or ``splice_relay`` (server
    "splice"), in front of ``child_port``, ready: (process, port)."""
    port = procs.free_port()
    env = None
    if server == "granian":
        granian = str(Path(sys.executable).with_name("granian"))
        argv = [granian, "--interface", "asgi", "--loop", "uvloop", "--no-ws", "--port", str(port)]
        argv += ["--log-level", "warning", "bench.bare_relay:app"]
        env = {**os.environ, "BARE_RELAY_CHILD": str(child_port)}
    else:
        module = "bench.splice_relay" if server == "splice" else "bench.bare_relay"
        argv = [sys.executable, "-m", module, str(port), str(child_port)]
    proc = procs.spawn(argv, work / f"{name}.log", env)
    ready_port(port, proc, work / f"{name}.log", 60)
    return proc, port
