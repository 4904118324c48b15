"""A child's answers name the model's file, never its absolute path (issue 12, Low)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from corral.generator import model_source
from corral.supervisor.http.scrub import HidePaths
from corral.supervisor.pull import library, sources
from tests.support import CorralServer, demo_model

MODEL = Path("/home/someone/models/m.gguf")


def test_a_path_split_between_chunks_is_still_hidden() -> None:
    hide = HidePaths([MODEL])
    sent = hide.feed(b'{"model_path":"/home/some') + hide.feed(b'one/models/m.gguf","x":1}')
    sent += hide.close(broken=False)
    assert json.loads(sent) == {"model_path": "m.gguf", "x": 1}


def test_a_streamed_event_is_not_held_back() -> None:
    hide = HidePaths([MODEL])
    event = b'data: {"model":"/home/someone/models/m.gguf"}\n\n'
    assert hide.feed(event) == b'data: {"model":"m.gguf"}\n\n'
    assert hide.close(broken=False) == b""


def test_a_path_json_escapes_is_hidden_too() -> None:
    odd = Path('/srv/"q"/m.gguf')
    hide = HidePaths([odd])
    sent = hide.feed(json.dumps({"model_path": str(odd)}).encode()) + hide.close(broken=False)
    assert json.loads(sent) == {"model_path": "m.gguf"}


@pytest.mark.e2e
def test_props_and_answers_through_corral_hide_the_models_folder(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "models": [demo_model()],
    }
    folder = str(models_dir.resolve())
    with CorralServer(config, tmp_path) as server:
        props = httpx.get(f"{server.url}/upstream/gemma-3-270m/props", timeout=120)
        assert props.status_code == 200, props.text
        assert props.json()["model_path"] == "gemma-3-270m-q4_k_m.gguf"
        assert folder not in props.text
        body = {"model": "gemma-3-270m", "prompt": "Hi", "n_predict": 2}
        answer = httpx.post(f"{server.url}/completion", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        assert folder not in answer.text
        streamed = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "gemma-3-270m",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2,
                "stream": True,
            },
            timeout=120,
        )
        assert streamed.status_code == 200
        assert "data: [DONE]" in streamed.text
        assert folder not in streamed.text


# Issue 26, item 2: one file-name rule for every way a download's name comes in.

ESCAPING = ["%2e%2e%2fescaped.gguf", "%2e%2e%2fnewdir%2fdeep%2fpwn.gguf", "..%5cwin.gguf", "%2e%2e"]


@pytest.mark.parametrize("tail", ESCAPING)
def test_a_url_whose_decoded_name_leaves_the_folder_is_no_source(tail: str) -> None:
    with pytest.raises(model_source.SourceSyntaxError, match="is not one file name"):
        library.resolve(f"http://127.0.0.1:1/x/{tail}")


def test_corral_pull_and_the_library_read_names_alike() -> None:
    url = "http://127.0.0.1:1/x/%2e%2e%2fescaped.gguf"
    with pytest.raises(sources.SourceError, match="is not one file name"):
        sources.file_name(sources.parse(url), None)


def test_api_pull_writes_nothing_outside_models_path(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    config = {"auto_pull": True, "models_path": str(models), "models": []}
    with CorralServer(config, tmp_path) as server:
        for tail in ESCAPING[:2]:
            body = {"model": f"http://127.0.0.1:1/x/{tail}", "stream": False}
            answer = httpx.post(f"{server.url}/api/pull", json=body, timeout=30)
            assert answer.status_code == 400, answer.text
            assert "is not one file name in the models folder" in answer.json()["error"]
    assert not (tmp_path / "newdir").exists()
    assert not list(tmp_path.glob("escaped.gguf*"))
