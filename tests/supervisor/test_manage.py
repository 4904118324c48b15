"""Ollama's /api/pull and the refused management routes, and auto_pull on the load path:
a real corral with fake upstreams, pulling from a fake Ollama registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from tests.supervisor.fake_registries import ollama_model, tiny_gguf
from tests.supervisor.file_server import FileServer
from tests.support import CorralServer, fake_cmd


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FileServer, bytes]]:
    gguf = tiny_gguf(tmp_path_factory.mktemp("blob") / "m.gguf", padding=2 * 1024 * 1024)
    with FileServer() as server:
        ollama_model(server, "library/gemma3", "270m", gguf, params={"top_k": 64})
        ollama_model(server, "library/auto", "1b", gguf)
        yield server, gguf


def corral(tmp: Path, registry: FileServer, auto_pull: bool) -> CorralServer:
    (tmp / "models").mkdir()
    present = tmp / "models" / "here.gguf"
    present.write_bytes(b"GGUF" + bytes(60))
    config = {
        "models_path": str(tmp / "models"),
        "auto_pull": auto_pull,
        "models": [
            {"name": "here", "path": str(present), "cmd": fake_cmd("here")},
            {"name": "auto:1b", "source": "auto:1b", "cmd": fake_cmd("auto")},
        ],
    }
    return CorralServer(config, tmp, env={"CORRAL_OLLAMA_REGISTRY": registry.url("")})


@pytest.fixture(scope="module")
def pulling(
    tmp_path_factory: pytest.TempPathFactory, registry: tuple[FileServer, bytes]
) -> Iterator[CorralServer]:
    with corral(tmp_path_factory.mktemp("on"), registry[0], auto_pull=True) as running:
        yield running


@pytest.fixture(scope="module")
def declared(
    tmp_path_factory: pytest.TempPathFactory, registry: tuple[FileServer, bytes]
) -> Iterator[CorralServer]:
    with corral(tmp_path_factory.mktemp("off"), registry[0], auto_pull=False) as running:
        yield running


def test_a_configured_model_with_its_file_is_already_pulled(declared: CorralServer) -> None:
    with ollama.Client(host=declared.url, timeout=30) as client:
        assert client.pull("here").status == "success"
    answer = httpx.post(f"{declared.url}/api/pull", json={"model": "here"}, timeout=30)
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in answer.text.splitlines()] == [{"status": "success"}]


def test_downloads_at_run_time_are_off_by_default(declared: CorralServer) -> None:
    with (
        ollama.Client(host=declared.url, timeout=30) as client,
        pytest.raises(ollama.ResponseError) as error,
    ):
        client.pull("gemma3:270m")
    assert error.value.status_code == 403
    assert "downloads at run time are off: set `auto_pull: true`" in error.value.error


def test_pull_streams_progress_then_serves_the_model(
    pulling: CorralServer, registry: tuple[FileServer, bytes]
) -> None:
    _, gguf = registry
    sha = hashlib.sha256(gguf).hexdigest()
    answer = httpx.post(f"{pulling.url}/api/pull", json={"model": "gemma3:270m"}, timeout=60)
    events = [json.loads(line) for line in answer.text.splitlines()]
    assert events[0] == {"status": "pulling manifest"}
    progress = [e for e in events if e.get("digest") == f"sha256:{sha}"]
    assert progress[0]["status"] == f"pulling {sha[:12]}"
    assert progress[-1]["completed"] == progress[-1]["total"] == len(gguf)
    assert events[-2:] == [{"status": "verifying sha256 digest"}, {"status": "success"}]
    names = [m["name"] for m in httpx.get(f"{pulling.url}/api/tags").json()["models"]]
    assert "gemma3:270m" in names


def test_a_pulled_name_is_used_by_that_name_also_after_a_restart(
    pulling: CorralServer, tmp_path: Path
) -> None:
    with ollama.Client(host=pulling.url, timeout=60) as client:
        assert client.pull("gemma3:270m").status == "success"
        assert client.show("gemma3:270m").details is not None
        assert client.show("gemma3-270m").details is not None  # the file's stem, as before
    models = Path(pulling.config_path).parent / "models"
    with (
        CorralServer({"models_path": str(models)}, tmp_path) as again,
        ollama.Client(host=again.url, timeout=30) as client,
    ):
        assert "gemma3:270m" in [m.model for m in client.list().models]
        assert client.show("gemma3:270m").details is not None


def test_a_pull_that_fails_ends_with_an_error_line(pulling: CorralServer) -> None:
    with (
        ollama.Client(host=pulling.url, timeout=30) as client,
        pytest.raises(ollama.ResponseError) as error,
    ):
        client.pull("gemma3:404b", stream=False)
    assert "library/gemma3:404b: not in the registry" in error.value.error


def test_auto_pull_downloads_a_missing_file_on_first_use(pulling: CorralServer) -> None:
    target = Path(pulling.config_path).parent / "models" / "auto-1b.gguf"
    assert not target.exists()
    answer = httpx.post(
        f"{pulling.url}/v1/chat/completions",
        json={"model": "auto:1b", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert target.is_file()
    assert "auto:1b: pulling auto:1b into" in pulling.log()


@pytest.mark.parametrize(
    ("method", "path", "says"),
    [
        ("DELETE", "/api/delete", "corral does not delete models"),
        ("POST", "/api/copy", "another name with `aliases`"),
        ("POST", "/api/create", "declare a preset in the config"),
        ("POST", "/api/push", "corral does not push models"),
    ],
)
def test_management_routes_say_what_corral_does_instead(
    declared: CorralServer, method: str, path: str, says: str
) -> None:
    answer = httpx.request(method, f"{declared.url}{path}", json={"model": "here"}, timeout=30)
    assert answer.status_code == 400
    assert says in answer.json()["error"]
