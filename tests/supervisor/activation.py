"""systemd's socket activation in the tests: ``systemd-socket-activate`` stands in for PID 1.

It listens on the addresses given, waits for the first connection, then execs ``corral
serve`` in place (same PID) with LISTEN_FDS/LISTEN_PID set, as systemd does for a
``.socket`` unit with ``Accept=no``; corral's exit code is its exit code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import corral_bin, free_port, stop_process, wait_until

ACTIVATE = shutil.which("systemd-socket-activate")

needs_activate = pytest.mark.skipif(
    ACTIVATE is None, reason="needs systemd-socket-activate (Debian's systemd package)"
)


class Activated:
    """``corral serve`` behind ``systemd-socket-activate``: nothing runs until a connection."""

    def __init__(
        self,
        config: Mapping[str, Any],
        tmp: Path,
        addresses: Sequence[str] = ("127.0.0.1",),
        args: Sequence[str] = (),
    ) -> None:
        assert ACTIVATE is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        self.log_path = tmp / "corral.log"
        self.sockets = len(addresses)
        listen = [f"--listen={a if ':' not in a else f'[{a}]'}:{self.port}" for a in addresses]
        serve = [corral_bin(), "serve", "--config", str(self.config_path), *args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [ACTIVATE, *listen, *serve], stdout=log, stderr=subprocess.STDOUT, env=os.environ
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_listening(self) -> None:
        """Until systemd-socket-activate holds every socket (nothing else runs yet)."""
        wait_until(
            lambda: self.log().count("Listening on") == self.sockets,
            10,
            "systemd-socket-activate to listen",
        )

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"corral still runs after {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> Activated:
        self.wait_listening()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
