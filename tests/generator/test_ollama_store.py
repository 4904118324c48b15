"""Ollama's store read in place: names, digests and layers as Ollama writes them, how the
config's entries meet the store's, and that reading it needs no write."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from corral.generator import loader, ollama_store
from corral.generator.problems import ConfigError
from tests.ollama_layout import add_model, tree_digest

PARAMS = {"num_predict": 3, "num_ctx": 2048, "stop": ["<end_of_turn>"], "temperature": 0.5}


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


@pytest.fixture
def store(tmp_path: Path, gguf: Path) -> Path:
    root = tmp_path / "ollama" / "models"
    projector = tmp_path / "mmproj.gguf"
    projector.write_bytes(b"GGUF-projector")
    lora = tmp_path / "lora.gguf"
    lora.write_bytes(b"GGUF-lora")
    add_model(
        root, "gemma3:270m", gguf, params=PARAMS, system="Be brief.", template="{{ .Prompt }}"
    )
    add_model(root, "someone/vision:q4", gguf, projector=projector, adapters=(lora,))
    add_model(root, "hf.co/owner/repo-GGUF:Q4_K_M", gguf)
    add_model(root, "plain", gguf)  # tag latest
    return root


def test_names_digests_and_layers_as_ollama_lists_them(store: Path, gguf: Path) -> None:
    read = ollama_store.read(store)
    assert sorted(read.models) == [
        "gemma3:270m",
        "hf.co/owner/repo-GGUF:Q4_K_M",
        "plain:latest",
        "someone/vision:q4",
    ]
    assert read.skipped == ()
    gemma = read.models["gemma3:270m"]
    manifest = store / "manifests/registry.ollama.ai/library/gemma3/270m"
    assert gemma.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()
    data = json.loads(manifest.read_bytes())
    assert gemma.size == sum(x["size"] for x in data["layers"]) + data["config"]["size"]
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert gemma.model == store / "blobs" / f"sha256-{sha}"
    assert gemma.entry() == {
        "name": "gemma3:270m",
        "path": str(gemma.model),
        "context_size": 2048,
        # As Ollama's API maps options: num_predict is llama-server's max_tokens.
        "parameters": {"max_tokens": 3, "stop": ["<end_of_turn>"], "temperature": 0.5},
        "system_prompt": "Be brief.",
    }
    assert gemma.go_template
    assert gemma.details["quantization_level"] == "Q4_K_M"
    vision = read.models["someone/vision:q4"].entry()
    assert vision["args"][0] == "--mmproj" and vision["args"][2] == "--lora"
    assert all(Path(a).parent == store / "blobs" for a in vision["args"][1::2])


def test_manifests_it_cannot_serve_are_skipped_with_the_reason(store: Path, gguf: Path) -> None:
    cloud = store / "manifests/registry.ollama.ai/library/big/120b-cloud"
    cloud.parent.mkdir(parents=True)
    cloud.write_text(json.dumps({"schemaVersion": 2, "layers": []}), encoding="utf-8")
    broken = store / "manifests/registry.ollama.ai/library/broken/latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json", encoding="utf-8")
    not_gguf = store.parent / "old.bin"
    not_gguf.write_bytes(b"ggjt" + bytes(10))
    add_model(store, "ancient:7b", not_gguf)
    add_model(store, "partial:1b", gguf, model_sha256="0" * 64)
    (store / "blobs" / f"sha256-{'0' * 64}").unlink()  # its blob never arrived
    read = ollama_store.read(store)
    assert "gemma3:270m" in read.models and len(read.models) == 4
    reasons = "\n".join(read.skipped)
    assert "120b-cloud: no model layer" in reasons
    assert "broken/latest: not a manifest" in reasons
    assert "is not a GGUF file" in reasons
    assert "partial/1b" in reasons and "No such file" in reasons


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_store_is_served_and_the_config_wins_by_name(tmp_path: Path, store: Path) -> None:
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    path = config_file(
        tmp_path,
        f"ollama_models: {store}\nmodels:\n- name: someone/vision:q4\n  path: {own}\n",
    )
    config = loader.load(path, environ={})
    assert config.model("someone/vision:q4").path == own  # type: ignore[union-attr]
    assert config.model("someone/vision:q4").ollama is None  # type: ignore[union-attr]
    gemma = config.model("gemma3:270m")
    assert gemma is not None and gemma.ollama is not None
    assert gemma.parameters["max_tokens"] == 3 and gemma.context_size == 2048
    # Ollama resolves a bare name to :latest; so does corral, for the store's models.
    assert config.model("plain") is config.model("plain:latest") is not None


def test_a_peers_model_of_the_same_name_keeps_it(tmp_path: Path, store: Path) -> None:
    path = config_file(
        tmp_path,
        f"ollama_models: {store}\npeers:\n  box:\n    url: http://10.0.0.2:11434\n"
        "    models: [gemma3:270m, {name: other, aliases: [plain]}]\n",
    )
    config = loader.load(path, environ={})
    assert config.model("gemma3:270m") is None  # routed to the peer, not served here
    assert config.model("plain:latest") is not None and config.model("plain") is None


def test_an_ollama_path_sets_more_on_a_store_model(tmp_path: Path, store: Path) -> None:
    path = config_file(
        tmp_path,
        f"""ollama_models: {store}
models:
- name: gemma3:270m
  path: ollama:gemma3:270m
  context_size: 8192
  ttl: 0
  parameters: {{temperature: 0.9}}
- name: fast
  path: ollama:registry.ollama.ai/library/gemma3:270m
  args: [--threads, "2"]
""",
    )
    config = loader.load(path, environ={})
    gemma = config.model("gemma3:270m")
    assert gemma is not None and gemma.ollama is not None
    assert gemma.context_size == 8192 and gemma.ttl == 0
    assert gemma.parameters == {"max_tokens": 3, "stop": ["<end_of_turn>"], "temperature": 0.9}
    assert gemma.system_prompt == "Be brief."
    fast = config.model("fast")
    assert fast is not None and fast.path == gemma.path and fast.args == ["--threads", "2"]
    assert fast.ollama is not None and fast.ollama.name == "gemma3:270m"
    assert [m.name for m in config.models].count("gemma3:270m") == 1


def test_a_preset_of_a_store_model(tmp_path: Path, store: Path) -> None:
    path = config_file(
        tmp_path,
        f"ollama_models: {store}\nmodels:\n- name: terse\n  from: gemma3:270m\n"
        "  parameters: {temperature: 0.1}\n",
    )
    terse = loader.load(path, environ={}).model("terse")
    assert terse is not None and terse.path is not None and terse.path.parent.name == "blobs"
    assert terse.parameters["temperature"] == 0.1 and terse.parameters["max_tokens"] == 3


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("path: ollama:gemma3:1b", "'ollama:gemma3:1b' is not in Ollama's store at"),
        ("path: ollama:gemma3:270m\n  source: ollama:gemma3:270m", "cannot have a source"),
        ("from: gemma3:1b", "models[0].from: unknown model 'gemma3:1b': not in the config"),
    ],
)
def test_what_the_store_does_not_hold_is_an_error(
    tmp_path: Path, store: Path, entry: str, words: str
) -> None:
    path = config_file(tmp_path, f"ollama_models: {store}\nmodels:\n- name: x\n  {entry}\n")
    with pytest.raises(ConfigError) as failure:
        loader.load(path, environ={})
    assert words in str(failure.value)
    assert "gemma3:270m" in str(failure.value) or "ollama list" in str(failure.value)


def test_an_ollama_path_without_a_store_says_to_set_one(tmp_path: Path) -> None:
    path = config_file(tmp_path, "models:\n- name: g\n  path: ollama:gemma3:270m\n")
    with pytest.raises(ConfigError) as failure:
        loader.load(path, environ={})
    assert "models[0].path: 'ollama:gemma3:270m' names a model of Ollama's store, but no " in (
        str(failure.value)
    )


def test_generate_accepts_a_preset_of_a_store_it_cannot_read() -> None:
    # `corral generate` runs in the Nix build's sandbox, where /var/lib/ollama is not there.
    raw = {"ollamaModels": "/var/lib/ollama/models", "models": {"terse": {"from": "gemma3:270m"}}}
    assert loader.validate(raw).model("terse") is not None


def test_env_ollama_models_names_the_store(tmp_path: Path, store: Path) -> None:
    config = loader.load(None, environ={"OLLAMA_MODELS": str(store)})
    assert config.ollama_models == store
    assert config.model("gemma3:270m") is not None


#: Opens seen by the audit hook while a test watches: (path, mode, flags).
_OPENS: list[tuple[str, object, int]] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENS is not None:
        path, mode, flags = args
        _OPENS.append((str(path), mode, int(flags) if isinstance(flags, int) else 0))


sys.addaudithook(_audit)  # hooks cannot be removed; it records only while _OPENS is a list


def test_the_store_is_only_ever_opened_for_reading(tmp_path: Path, store: Path) -> None:
    global _OPENS
    before = tree_digest(store)
    _OPENS = []
    try:
        config = loader.load(None, environ={"OLLAMA_MODELS": str(store)})
        opened = [o for o in _OPENS if o[0].startswith(str(store))]
    finally:
        _OPENS = None
    assert len([m for m in config.models if m.ollama is not None]) == 4
    assert opened, "the audit hook saw no open of the store"
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    assert [o for o in opened if o[2] & writes or any(c in str(o[1]) for c in "wax+")] == []
    assert tree_digest(store) == before
