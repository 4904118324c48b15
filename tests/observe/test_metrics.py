"""/metrics, parsed with prometheus_client's parser and checked against what was done, and
who may read it: a key, or an address in metrics_allow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gguf_files import write_gguf
from tests.observe.helpers import metrics, sample
from tests.support import CorralServer, fake_cmd

CHAT = {"model": "n", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CorralServer]:
    config = {"models": [{"name": "n", "cmd": fake_cmd("n", "--tokens", "4")}]}
    with CorralServer(config, tmp_path) as running:
        yield running


def test_three_requests_and_one_load_are_counted(server: CorralServer) -> None:
    for stream in (False, True, False):
        body = {**CHAT, "stream": stream}
        answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200
    found = metrics(server.url)
    route = "/v1/chat/completions"
    assert sample(found, "corral_requests_total", model="n", route=route, status="200") == 3
    assert sample(found, "corral_loads_total", model="n") == 1
    assert sample(found, "corral_load_seconds_count", model="n") == 1
    assert (sample(found, "corral_load_seconds_sum", model="n") or 0) > 0
    # The fake child's timings: 3 prompt tokens, 4 generated, 50 tokens/s, streamed or not.
    assert sample(found, "corral_prompt_tokens_total", model="n") == 9
    assert sample(found, "corral_predicted_tokens_total", model="n") == 12
    assert sample(found, "corral_tokens_per_second", model="n") == 50
    assert sample(found, "corral_children") == 1
    assert sample(found, "corral_model_state", model="n", state="ready") == 1
    assert sample(found, "corral_in_flight", model="n") == 0
    status = httpx.get(f"{server.url}/status", timeout=10).json()["models"][0]
    assert status["tokens_per_second"] == 50 and status["load_seconds"] > 0


def test_unloads_are_counted_by_reason_and_errors_by_status(server: CorralServer) -> None:
    httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=30).raise_for_status()
    httpx.post(f"{server.url}/unload/n", timeout=30).raise_for_status()
    bad = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "unknown"}, timeout=10)
    assert bad.status_code == 404
    found = metrics(server.url)
    assert sample(found, "corral_unloads_total", model="n", reason="unload") == 1
    assert sample(found, "corral_children") == 0
    assert sample(found, "corral_model_state", model="n", state="unloaded") == 1
    # The unknown name is no label: a request's words never become a series.
    assert not any(("model", "unknown") in labels for _, labels in found)


KEYED = {"api_keys": ["secret"], "models": [{"name": "n", "cmd": fake_cmd("n")}]}


def test_with_keys_metrics_needs_one_unless_the_address_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with CorralServer(KEYED, tmp_path / "a") as keyed:
        assert httpx.get(f"{keyed.url}/metrics", timeout=10).status_code == 401
        metrics(keyed.url, {"Authorization": "Bearer secret"})  # a scrape with the key
    allowed = {**KEYED, "metrics_allow": ["127.0.0.0/8"]}
    (tmp_path / "b").mkdir()
    with CorralServer(allowed, tmp_path / "b") as open_metrics:
        metrics(open_metrics.url)  # no key: the address is allowed
        # Only /metrics: every other route still needs the key.
        assert httpx.get(f"{open_metrics.url}/status", timeout=10).status_code == 401


def test_a_browser_is_asked_for_the_key(tmp_path: Path) -> None:
    with CorralServer(KEYED, tmp_path) as keyed:
        page = httpx.get(f"{keyed.url}/ui", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 401
        assert page.headers["www-authenticate"] == 'Basic realm="corral"'
        api = httpx.get(f"{keyed.url}/v1/models", timeout=10)
        assert "www-authenticate" not in api.headers  # an API client is not prompted
        basic = httpx.get(f"{keyed.url}/ui", auth=("any", "secret"), timeout=10)
        assert basic.status_code == 200 and "<table" in basic.text


def test_a_bad_metrics_allow_entry_names_the_key(tmp_path: Path) -> None:
    from corral.generator import loader
    from corral.generator.problems import ConfigError

    with pytest.raises(ConfigError) as exc:
        loader.validate({"metrics_allow": ["10.0.0.300"]})
    assert "metrics_allow[0]: must be an address or a network" in str(exc.value)


def test_an_idle_corral_reads_no_model_file_even_when_scraped(tmp_path: Path) -> None:
    """Reading a GGUF header imports gguf and numpy (17 MB): registering the gauges read every
    model's header at start, and an idle corral held 83 MB instead of 66."""
    write_gguf(tmp_path / "m.gguf")
    config = {"models_path": str(tmp_path), "models": [{"name": "m", "path": "m.gguf"}]}
    (tmp_path / "serve").mkdir()
    with CorralServer(config, tmp_path / "serve") as server:
        assert "corral_model_state" in httpx.get(f"{server.url}/metrics", timeout=10).text
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "numpy" not in maps


def test_load_only_and_unload_only_requests_are_counted_as_their_200s(
    server: CorralServer,
) -> None:
    # Each answers 200 with no word from the child: a load, or an unload.
    asked = [
        ("/models/load", {"model": "n"}),
        ("/api/generate", {"model": "n", "stream": False}),
        ("/api/chat", {"model": "n", "messages": [], "stream": False}),
        ("/models/unload", {"model": "n"}),
        ("/api/generate", {"model": "n", "keep_alive": 0, "stream": False}),
    ]
    for path, body in asked:
        answer = httpx.post(f"{server.url}{path}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
    found = metrics(server.url)
    for route, count in [("/models/load", 1), ("/api/generate", 2), ("/api/chat", 1)]:
        assert sample(found, "corral_requests_total", model="n", route=route, status="200") == count
        assert sample(found, "corral_requests_total", model="n", route=route, status="500") is None
    assert sample(found, "corral_requests_total", model="n", route="/models/unload", status="200")
