"""The committed JSON Schema (generator/config.schema.json) stays in sync with the settings."""

from __future__ import annotations

import json
from pathlib import Path

from corral.generator.cli import json_schema

COMMITTED = Path(__file__).parents[2] / "generator" / "config.schema.json"
REGENERATE = "regenerate it with: corral schema > generator/config.schema.json"


def test_committed_schema_matches_the_settings() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == json_schema(), f"{COMMITTED} is out of date; {REGENERATE}"


def test_committed_schema_is_the_commands_exact_output() -> None:
    # Byte for byte, so that regenerating it never shows up as a spurious diff.
    expected = json.dumps(json_schema(), indent=2) + "\n"
    assert COMMITTED.read_text(encoding="utf-8") == expected, REGENERATE


def test_schema_describes_config_yaml_in_snake_case() -> None:
    schema = json_schema()
    model = schema["$defs"]["ModelConfig"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False and model["additionalProperties"] is False
    assert {"context_size", "gpu_layers", "system_prompt", "chat_template"} <= set(
        model["properties"]
    )
    assert "contextSize" not in model["properties"]
    assert model["required"] == ["name"]
    assert (
        model["properties"]["name"]["pattern"] == model["properties"]["aliases"]["items"]["pattern"]
    )


def test_every_key_has_a_description() -> None:
    schema = json_schema()
    objects = [schema, *schema["$defs"].values()]
    undocumented = [
        f"{obj['title']}.{key}"
        for obj in objects
        for key, prop in obj["properties"].items()
        if not prop.get("description")
    ]
    assert undocumented == []
