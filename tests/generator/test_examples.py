"""examples/*.yaml: each validates against the committed JSON Schema and loads."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from corral.generator import loader
from corral.generator.model_settings import GroupConfig, ModelConfig
from corral.generator.settings import Config

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SCHEMA = json.loads((ROOT / "generator" / "config.schema.json").read_text(encoding="utf-8"))

SEED_TEXT = """\
models:
  - name: qwen2.5-coder:3b
    path: models/qwen2.5-coder-3b-instruct-q8_0.gguf
    context_size: 32768
  - name: llama3.2:3b
    path: models/llama-3.2-3b-instruct-q8_0.gguf
    context_size: 131072
  - name: qwen2.5-coder:14b
    path: models/qwen2.5-coder-14b-instruct-q5_k_m.gguf
    context_size: 32768
  - name: qwen2.5-coder:32b
    path: models/qwen2.5-coder-32b-instruct-q4_k_m.gguf
    context_size: 32768
    gpu_layers: 35  # Partial offloading for larger model
  - name: qwq:32b
    path: models/qwq-32b-preview-q4_k_m.gguf
    context_size: 32768
    gpu_layers: 30
  - name: gpt-oss:20b
    path: models/gpt-oss-20b-q5_k_m.gguf
    context_size: 8192
"""


def test_the_expected_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == ["demo.yaml", "full.yaml", "seed.yaml"]


def test_the_seed_is_kept_verbatim() -> None:
    assert (ROOT / "examples" / "seed.yaml").read_text(encoding="utf-8") == SEED_TEXT


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_the_json_schema(example: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(data)
    ]
    assert errors == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(example: Path) -> None:
    config = loader.load(example, {}, discover_models=False)
    assert config.models, f"{example.name} declares no model"


def test_the_schema_rejects_what_validation_rejects() -> None:
    # Guards the test above: a schema that accepted anything would pass it too.
    validator = jsonschema.Draft202012Validator(SCHEMA)
    bad = [
        {"models": [{"name": "a", "path": "a", "contxt_size": 1}]},
        {"models": [{"name": "my model", "path": "a"}]},
        {"models": [{"name": "a"}]},
        {"models": [{"name": "a", "path": "a", "ttl": -1}]},
        {"port": "abc"},
    ]
    assert [validator.is_valid(b) for b in bad] == [False] * len(bad)


def test_the_demo_serves_gemma_with_its_template() -> None:
    config = loader.load(ROOT / "examples" / "demo.yaml", {"MODELS_PATH": "/m"})
    gemma = config.model("gemma-3-270m")
    assert gemma is not None and gemma.chat_template == "gemma"
    assert gemma.path == Path("/m/gemma-3-270m-q4_k_m.gguf")


def test_full_uses_every_key() -> None:
    data = yaml.safe_load((ROOT / "examples" / "full.yaml").read_text(encoding="utf-8"))
    model_keys = {key for model in data["models"] for key in model}
    group_keys = {key for group in data["groups"].values() for key in group}
    assert set(data) == set(Config.model_fields)
    # A field with its own alias (from_ -> from) is written under that alias.
    assert model_keys == {
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in ModelConfig.model_fields.items()
    }
    assert group_keys == set(GroupConfig.model_fields)
