"""The low findings: a digit int() refuses, a client that hangs up mid-body, a YAML bomb."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from corral.generator import loader
from corral.generator.problems import ConfigError
from corral.supervisor.status_cli import logs_command
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


# Issue 26, item 6: the lower findings of the second pass.

#: Lines a child might log (llama-server echoes a request's grammar and prompt): a CR ends an
#: SSE line as LF does, and an escape sequence drives a terminal.
FORGED = "grammar: root\revent: crashed\rdata: {}\r"
ESCAPES = "title\x1b]0;pwned\x07\x1b[2Jcleared\x9b1m"


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    config = {"models": [{"name": "m", "cmd": fake_cmd("m", "--say", FORGED, "--say", ESCAPES)}]}
    with CorralServer(config, tmp_path_factory.mktemp("chatty")) as running:
        loaded = httpx.post(
            f"{running.url}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=30
        )
        assert loaded.status_code == 200
        yield running


def test_a_cr_in_a_childs_log_line_injects_no_sse_event(chatty: CorralServer) -> None:
    received = b""
    with httpx.stream("GET", f"{chatty.url}/logs/m/stream", timeout=10) as answer:
        for chunk in answer.iter_raw():
            received += chunk
            if b"cleared" in received:
                break
    # Split as EventSource does: CR, LF and CRLF each end a line.
    lines = received.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fields = {line.partition(":")[0] for line in lines if line and not line.startswith(":")}
    assert fields == {"data"}, lines
    assert "data: event: crashed" in lines


def test_corral_logs_prints_no_terminal_escapes(chatty: CorralServer) -> None:
    result = CliRunner().invoke(logs_command, ["m", "--url", chatty.url])
    assert result.exit_code == 0, result.output
    assert not {"\x1b", "\x9b", "\x07", "\r"} & set(result.output), repr(result.output)
    assert "title\\x1b]0;pwned\\x07\\x1b[2Jcleared\\x9b1m" in result.output
    assert "grammar: root\\revent: crashed" in result.output


def test_logs_lines_with_thousands_of_digits_is_400(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/logs/m", params={"lines": "9" * 5000})
    assert answer.status_code == 400
    assert "`lines` must be a whole number" in answer.json()["error"]["message"]
    assert "Traceback" not in server.log()


def test_a_revoked_keys_event_stream_ends_after_sighup(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("old\nkept\n", encoding="utf-8")
    with CorralServer({"api_key_file": str(keys), "models": []}, tmp_path) as server:
        following = {k: threading.Event() for k in ("old", "kept")}
        seen: dict[str, list[str]] = {k: [] for k in following}

        def follow(key: str) -> None:
            headers = {"Authorization": f"Bearer {key}"}
            url = f"{server.url}/events"
            try:
                with httpx.stream("GET", url, headers=headers, timeout=60) as sse:
                    for chunk in sse.iter_raw():
                        following[key].set()
                        if b"event: reloaded" in chunk:
                            seen[key].append("reloaded")
            except httpx.HTTPError:
                seen[key].append("cut")  # the server stopped under it (the test's end)
                return
            seen[key].append("ended")

        for key in following:
            threading.Thread(target=follow, args=(key,), daemon=True).start()
        for key, started in following.items():
            assert started.wait(10), f"the {key} stream never began"
        keys.write_text("kept\n", encoding="utf-8")
        server.signal(signal.SIGHUP)
        wait_until(lambda: seen["old"] == ["ended"], 10, "the revoked key's stream to end")
        wait_until(lambda: seen["kept"] == ["reloaded"], 10, "the kept key's stream to go on")
