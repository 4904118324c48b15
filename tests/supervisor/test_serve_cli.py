"""`corral serve` refusing to start, with a message a person can act on."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from tests.support import CorralServer, corral_bin, fake_cmd


def serve(
    config: Mapping[str, object], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    return subprocess.run(
        [corral_bin(), "serve", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_taken_port_is_a_clear_error_and_nothing_is_reaped(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(
            {"models": [{"name": "m", "cmd": fake_cmd("m")}]}, tmp_path, "--port", str(port)
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    # Issue 24 (12): which program is likely there, and how to move aside.
    assert "the port is taken" in result.stderr
    assert "Ollama and corral both use 11434" in result.stderr
    assert "choose another port with --port or env PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_api_key_file_is_a_config_error(tmp_path: Path) -> None:
    config = {"api_key_file": str(tmp_path / "missing"), "models": []}
    result = serve(config, tmp_path)
    assert result.returncode == 2
    assert "api_key_file: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = serve({"models": [{"name": "m", "path": "m.gguf", "contxt_size": 5}]}, tmp_path)
    assert result.returncode == 2
    assert "models[0].contxt_size: unknown key; did you mean context_size?" in result.stderr


def test_an_open_address_without_keys_is_a_loud_warning(tmp_path: Path) -> None:
    server = CorralServer({"models": [{"name": "m", "cmd": fake_cmd("m")}]}, tmp_path)
    server.argv += ["--host", "0.0.0.0"]
    with server:
        assert f"LISTENING ON 0.0.0.0:{server.port} WITH NO API KEYS" in server.log()
    (tmp_path / "keyed").mkdir()
    keyed = CorralServer({"api_keys": ["k"], "models": []}, tmp_path / "keyed")
    keyed.argv += ["--host", "0.0.0.0"]
    with keyed:
        assert "NO API KEYS" not in keyed.log()
