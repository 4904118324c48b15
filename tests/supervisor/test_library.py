"""The model library: ``corral pull`` by short name, ``corral lock`` and ``corral search``,
against a fake Ollama registry and a fake Hugging Face API on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from corral.generator import loader
from corral.generator.cli import cli
from corral.supervisor.cli import main as _registers_commands  # noqa: F401  (pull, lock, search)
from tests.supervisor.fake_registries import (
    COMMIT,
    hf_repo,
    ollama_catalog,
    ollama_model,
    tiny_gguf,
)
from tests.supervisor.file_server import FileServer, Served

PARAMS = {
    "temperature": 1,
    "top_k": 64,
    "stop": ["<end_of_turn>"],
    "num_ctx": 8192,
    "num_predict": 32,
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [*loader.ENV_OVERRIDES, "CORRAL_OLLAMA_REGISTRY", "HF_ENDPOINT", "HF_TOKEN"]:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


@pytest.fixture
def gguf(tmp_path: Path) -> bytes:
    # Over one 1 MiB download chunk, so that a cut connection leaves a real .part.
    (tmp_path / "src").mkdir()
    return tiny_gguf(tmp_path / "src" / "m.gguf", padding=3 * 1024 * 1024)


def corral(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_pull_by_short_name_saves_the_blob_and_records_the_defaults(
    server: FileServer, gguf: bytes, tmp_path: Path
) -> None:
    ollama_model(server, "library/gemma3", "270m", gguf, params=PARAMS, system="Be brief.")
    folder = tmp_path / "models"
    result = corral("pull", "gemma3:270m", "--dest", str(folder), "--registry", server.url(""))
    assert result.exit_code == 0, result.output
    saved = folder / "gemma3-270m.gguf"
    assert saved.read_bytes() == gguf
    manifest = next(h for p, h in server.requests if p.endswith("/manifests/270m"))
    assert manifest["accept"] == "application/vnd.docker.distribution.manifest.v2+json"
    sidecar = json.loads((folder / "gemma3-270m.library.json").read_text())
    # num_predict is the request's max_tokens; num_ctx is the model's context_size, not a default.
    expected = {"temperature": 1, "top_k": 64, "stop": ["<end_of_turn>"], "max_tokens": 32}
    assert sidecar["parameters"] == expected
    assert sidecar["system_prompt"] == "Be brief."
    assert "library defaults recorded in" in result.stdout
    assert "the config's own values win" in result.stdout
    assert "Ollama's template layer is a Go template" in result.stdout
    assert "has no chat template in its GGUF" in result.stderr
    assert "Set the model's chat_template" in result.stderr
    # The config names the model by its source; the library's defaults sit under its own.
    config = {
        "models_path": str(folder),
        "models": [{"name": "g", "source": "ollama:gemma3:270m", "parameters": {"top_k": 5}}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    model = loader.load(tmp_path / "c.yaml", {}).models[0]
    assert model.path == saved
    assert model.parameters == {**expected, "top_k": 5}
    assert model.system_prompt == "Be brief."
    assert [m.name for m in loader.load(tmp_path / "c.yaml", {}).models] == ["g"]


def test_registry_from_the_environment_and_a_gguf_with_a_template(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = tiny_gguf(tmp_path / "t.gguf", chat_template="{{ messages }}")
    ollama_model(server, "someone/tiny", "q4", body, template=None)
    monkeypatch.setenv("CORRAL_OLLAMA_REGISTRY", server.url(""))
    result = corral("pull", "ollama:someone/tiny:q4", "--dest", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "someone-tiny-q4.gguf").read_bytes() == body
    assert "chat template" not in result.output


def test_cut_connection_resumes_and_the_digest_is_checked(
    server: FileServer, gguf: bytes, tmp_path: Path
) -> None:
    half = len(gguf) // 2
    ollama_model(
        server, "library/gemma3", "270m", gguf, served_model=Served(gguf, break_after=half)
    )
    args = ("pull", "gemma3:270m", "--dest", str(tmp_path), "--registry", server.url(""))
    first = corral(*args)
    assert first.exit_code == 1
    assert "download interrupted" in first.stderr
    assert (tmp_path / "gemma3-270m.gguf.part").stat().st_size == half
    second = corral(*args)
    assert second.exit_code == 0, second.output
    assert server.ranges()[-1] == f"bytes={half}-"
    assert (tmp_path / "gemma3-270m.gguf").read_bytes() == gguf
    assert hashlib.sha256(gguf).hexdigest() in second.stdout


def test_a_blob_that_does_not_match_its_digest_is_refused(
    server: FileServer, gguf: bytes, tmp_path: Path
) -> None:
    ollama_model(server, "library/gemma3", "270m", gguf, served_model=Served(gguf[:-1] + b"!"))
    result = corral("pull", "gemma3:270m", "--dest", str(tmp_path), "--registry", server.url(""))
    assert result.exit_code == 1
    assert f"sha256 mismatch: expected {hashlib.sha256(gguf).hexdigest()}" in result.stderr
    assert list(tmp_path.glob("gemma3-270m*")) == []


def test_a_missing_tag_is_a_clear_error(server: FileServer, gguf: bytes, tmp_path: Path) -> None:
    ollama_model(server, "library/gemma3", "270m", gguf)
    folder = tmp_path / "models"
    result = corral("pull", "gemma3:9b", "--dest", str(folder), "--registry", server.url(""))
    assert result.exit_code == 1
    assert f"error: library/gemma3:9b: not in the registry at {server.url('')}" in result.stderr
    assert "HTTP 404" in result.stderr
    assert not folder.exists()


def hub(server: FileServer, tmp_path: Path) -> dict[str, bytes]:
    tmp_path = tmp_path / "hub"
    tmp_path.mkdir()
    files = {
        "README.md": b"# Model",
        "Model-Q4_K_M.gguf": tiny_gguf(tmp_path / "a.gguf", padding=100),
        "Model-Q8_0.gguf": tiny_gguf(tmp_path / "b.gguf", padding=200),
        "Q6_K/Model-Q6_K-00001-of-00002.gguf": tiny_gguf(tmp_path / "c.gguf", padding=300),
        "Q6_K/Model-Q6_K-00002-of-00002.gguf": b"second part",
        "mmproj-Model-f16.gguf": tiny_gguf(tmp_path / "d.gguf", padding=400),
    }
    hf_repo(server, "owner/Model-GGUF", files)
    return files


@pytest.fixture
def endpoint(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_ENDPOINT", server.url(""))
    return server.url("")


def test_hf_quant_picks_its_file_and_the_mmproj(
    server: FileServer, endpoint: str, tmp_path: Path
) -> None:
    files = hub(server, tmp_path)
    folder = tmp_path / "models"
    result = corral("pull", "hf:owner/Model-GGUF:q4_k_m", "--dest", str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "Model-GGUF-q4_k_m.gguf",
        "Model-GGUF-q4_k_m.library.json",  # its source: the name it is served by
        "mmproj-Model-GGUF-q4_k_m.gguf",
    ]
    assert (folder / "Model-GGUF-q4_k_m.gguf").read_bytes() == files["Model-Q4_K_M.gguf"]
    assert (folder / "mmproj-Model-GGUF-q4_k_m.gguf").read_bytes() == files["mmproj-Model-f16.gguf"]
    # Downloads are pinned to the commit the refs named.
    assert f"/owner/Model-GGUF/resolve/{COMMIT}/Model-Q4_K_M.gguf" in [
        p for p, _ in server.requests
    ]
    # The projector is handed to llama-server, and never served as a model of its own.
    config = {
        "models_path": str(folder),
        "models": [{"name": "m", "source": "hf:owner/Model-GGUF:q4_k_m"}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    loaded = loader.load(tmp_path / "c.yaml", {})
    assert [m.name for m in loaded.models] == ["m"]
    assert loaded.models[0].args == ["--mmproj", str(folder / "mmproj-Model-GGUF-q4_k_m.gguf")]


def test_hf_split_gguf_brings_every_part(server: FileServer, endpoint: str, tmp_path: Path) -> None:
    files = hub(server, tmp_path)
    folder = tmp_path / "models"
    result = corral("pull", "hf:owner/Model-GGUF:Q6_K", "--dest", str(folder))
    assert result.exit_code == 0, result.output
    first = folder / "Model-GGUF-Q6_K-00001-of-00002.gguf"
    second = folder / "Model-GGUF-Q6_K-00002-of-00002.gguf"
    assert first.read_bytes() == files["Q6_K/Model-Q6_K-00001-of-00002.gguf"]
    assert second.read_bytes() == b"second part"
    config = {
        "models_path": str(folder),
        "models": [{"name": "m", "source": "hf:owner/Model-GGUF:Q6_K"}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    # llama-server is given the first part; it finds the others by their names.
    assert loader.load(tmp_path / "c.yaml", {}).models[0].path == first


def test_an_unknown_quant_is_listed_against_the_ones_there(
    server: FileServer, endpoint: str, tmp_path: Path
) -> None:
    hub(server, tmp_path)
    result = corral("pull", "hf:owner/Model-GGUF:Q5_K_M", "--dest", str(tmp_path / "m"))
    assert result.exit_code == 1
    assert "hf:owner/Model-GGUF: no model file for quant Q5_K_M" in result.stderr
    assert "the repo has quants Q4_K_M, Q6_K, Q8_0" in result.stderr


def write_lock(server: FileServer, tmp_path: Path, gguf: bytes) -> dict[str, object]:
    ollama_model(server, "library/gemma3", "270m", gguf, params={"temperature": 0.5})
    hub(server, tmp_path)
    config = {
        "models": [
            {"name": "gemma3:270m", "source": "gemma3:270m"},
            {"name": "split", "source": "hf:owner/Model-GGUF:Q6_K"},
        ]
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = corral("lock", "--config", str(tmp_path / "config.yaml"), "--registry", server.url(""))
    assert result.exit_code == 0, result.output
    lock: dict[str, object] = json.loads((tmp_path / "corral.lock.json").read_text())
    return lock


def test_lock_pins_both_registries(
    server: FileServer, endpoint: str, gguf: bytes, tmp_path: Path
) -> None:
    lock = write_lock(server, tmp_path, gguf)
    sources = lock["sources"]
    assert isinstance(sources, dict)
    gemma = sources["gemma3:270m"]
    sha = hashlib.sha256(gguf).hexdigest()
    assert gemma["files"] == [
        {
            "role": "model",
            "name": "gemma3-270m.gguf",
            "url": server.url(f"/v2/library/gemma3/blobs/sha256:{sha}"),
            "size": len(gguf),
            "sha256": sha,
            "hash": "sha256-" + base64.b64encode(bytes.fromhex(sha)).decode(),
        }
    ]
    assert gemma["parameters"] == {"temperature": 0.5}
    split = sources["hf:owner/Model-GGUF:Q6_K"]
    assert [f["name"] for f in split["files"]] == [
        "Model-GGUF-Q6_K-00001-of-00002.gguf",
        "Model-GGUF-Q6_K-00002-of-00002.gguf",
        "mmproj-Model-GGUF-Q6_K.gguf",
    ]
    assert split["files"][0]["url"] == server.url(
        f"/owner/Model-GGUF/resolve/{COMMIT}/Q6_K/Model-Q6_K-00001-of-00002.gguf"
    )
    # Locking reads manifests and listings; it downloads no model file.
    assert not any(f"blobs/sha256:{sha}" in path for path, _ in server.requests)


def test_search_lists_names_and_tags_where_the_registry_lists_them(server: FileServer) -> None:
    ollama_catalog(server, {"library/gemma3": ["270m", "1b"], "library/qwen2.5-coder": ["7b"]})
    result = corral("search", "gem", "--registry", server.url(""))
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["gemma3:270m", "gemma3:1b"]


def test_search_without_a_listing_says_so(server: FileServer) -> None:
    result = corral("search", "gemma", "--registry", server.url(""))
    assert result.exit_code == 1
    assert f"the registry at {server.url('')} offers no listing" in result.stderr
    assert "HTTP 404" in result.stderr


def test_a_source_that_cannot_be_parsed_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"models": [{"name": "m", "source": "hf:x"}]}))
    result = corral("check", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert "models[0].source: 'hf:x' is not hf:owner/repo[:QUANT]" in result.stderr
