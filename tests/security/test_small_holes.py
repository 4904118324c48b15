"""The low findings: a digit int() refuses, a client that hangs up mid-body, a YAML bomb."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.generator import loader
from corral.generator.problems import ConfigError
from tests.support import CorralServer, fake_cmd, wait_until

CONFIG = {"models": [{"name": "m", "cmd": fake_cmd("m")}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("holes")) as running:
        yield running


@pytest.mark.parametrize("lines", ["²", "٣", "1e3"])
def test_logs_lines_that_are_not_ascii_digits_are_400(server: CorralServer, lines: str) -> None:
    answer = httpx.get(f"{server.url}/logs/m", params={"lines": lines})
    assert answer.status_code == 400
    assert "`lines` must be a whole number" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_a_client_that_hangs_up_mid_body_is_one_line_not_a_traceback(
    server: CorralServer, path: str
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"model": "m"'.encode()
        )
    line = f"client hung up while sending its body: POST {path}"
    wait_until(lambda: line in server.log(), 10, "the hang-up to be logged")
    log = server.log()
    assert "Traceback" not in log and "ERROR" not in log, log
    assert httpx.get(f"{server.url}/health").status_code == 200


def billion_laughs() -> str:
    """About 600 bytes of YAML that expand to 10^9 values."""
    levels = ["      l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        levels.append(f"      l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]")
    return "models:\n  - name: m\n    path: m.gguf\n    parameters:\n" + "\n".join(levels) + "\n"


def test_a_yaml_alias_bomb_is_a_config_error_at_once(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(billion_laughs(), encoding="utf-8")
    assert len(file.read_bytes()) < 700
    started = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        loader.load(file, environ={}, discover_models=False)
    assert "more than 200000 values once its YAML aliases (*name) are expanded" in str(exc.value)
    assert time.monotonic() - started < 10, "a bomb must not be expanded before it is refused"


def test_a_config_that_shares_a_few_aliases_still_loads(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        "models:\n"
        "  - name: a\n    path: a.gguf\n    parameters: &p {temperature: 0.2, top_k: 40}\n"
        "  - name: b\n    path: b.gguf\n    parameters: *p\n",
        encoding="utf-8",
    )
    config = loader.load(file, environ={}, discover_models=False)
    assert [m.parameters for m in config.models] == [{"temperature": 0.2, "top_k": 40}] * 2
