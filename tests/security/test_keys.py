"""API keys that would let everyone in, and a key header sent twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from corral.generator import loader
from corral.generator.cli import cli
from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.http.auth import Keys
from tests.support import CorralServer


@pytest.mark.parametrize("key", ["", "   ", "\t"])
def test_an_empty_or_blank_inline_key_is_a_config_error(key: str, tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(f"api_keys: [{json.dumps(key)}, good]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        loader.load(file, environ={}, discover_models=False)
    assert exc.value.problems == [f"api_keys[0]: must not be empty or only spaces, got {key!r}"]


def test_a_padded_inline_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        loader.validate({"api_keys": [" k "]})
    assert "api_keys[0]: must not start or end with spaces" in str(exc.value)


def test_a_key_file_with_only_empty_lines_is_a_config_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("\n   \n\t\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        Keys.from_config(Config(api_key_file=keys))
    assert exc.value.problems == [f"api_key_file: {keys} holds no key (only empty lines)"]


def test_an_empty_presented_key_never_matches() -> None:
    assert not Keys((b"k",)).accepts(b"")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    tmp = tmp_path_factory.mktemp("keys")
    (tmp / "keys").write_text("\nfile-key\n\n", encoding="utf-8")
    config = {"api_keys": ["inline-key"], "api_key_file": str(tmp / "keys"), "models": []}
    with CorralServer(config, tmp) as running:
        yield running


def test_keys_from_the_file_and_inline_both_work_and_an_empty_bearer_is_401(
    keyed: CorralServer,
) -> None:
    url = f"{keyed.url}/v1/models"
    for key in ("inline-key", "file-key"):
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    for header in ("Bearer", "Basic Og=="):  # Og== is ":", an empty password
        assert httpx.get(url, headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("name", ["Authorization", "x-api-key"])
def test_a_key_header_sent_twice_is_400(keyed: CorralServer, name: str) -> None:
    value = "Bearer inline-key" if name == "Authorization" else "inline-key"
    answer = httpx.get(f"{keyed.url}/v1/models", headers=[(name, value), (name, value)])
    assert answer.status_code == 400
    assert f"the {name.lower()} header was sent more than once" in answer.text


def test_check_refuses_a_key_file_of_blank_lines_as_serve_does(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("\n   \n\t\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"api_key_file: {keys}\nmodels: []\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(config)])
    assert result.exit_code == 2, result.output
    assert f"api_key_file: {keys} holds no key (only empty lines)" in result.stderr
    assert "ok" not in result.stdout


def test_check_only_warns_of_a_key_file_not_there_yet(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"api_key_file: {tmp_path / 'missing'}\nmodels: []\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "api_key_file: " in result.stderr and "does not exist (yet)" in result.stderr
