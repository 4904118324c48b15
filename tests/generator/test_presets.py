"""Presets (`from:`): a model entry that reuses another's file and overrides defaults."""

from __future__ import annotations

import pytest

from corral.generator.loader import validate
from corral.generator.problems import ConfigError

BASE = {
    "name": "base",
    "path": "g.gguf",
    "context_size": 2048,
    "chat_template": "gemma",
    "parameters": {"temperature": 0.5, "top_k": 3},
    "aliases": ["b"],
    "preload": True,
}


def test_preset_inherits_the_file_and_overrides_what_it_sets() -> None:
    config = validate(
        {
            "models": [
                BASE,
                {
                    "name": "pirate",
                    "from": "base",
                    "systemPrompt": "Arr.",
                    "parameters": {"temperature": 1.1},
                    "contextSize": 4096,
                },
            ]
        }
    )
    pirate = config.models[1]
    assert str(pirate.path) == "g.gguf"
    assert pirate.chat_template == "gemma"
    assert pirate.context_size == 4096, "the preset's own camelCase key wins"
    assert pirate.parameters == {"temperature": 1.1, "top_k": 3}
    assert pirate.system_prompt == "Arr."
    assert pirate.aliases == [] and pirate.preload is False, "identity is never inherited"
    assert pirate.from_ == "base"


def test_presets_chain() -> None:
    config = validate(
        {
            "models": [
                BASE,
                {"name": "one", "from": "base", "ttl": 5},
                {"name": "two", "from": "one", "system_prompt": "x"},
            ]
        }
    )
    assert config.models[2].ttl == 5 and str(config.models[2].path) == "g.gguf"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([{"name": "p", "from": "ghost"}], "models[0].from: unknown model 'ghost'"),
        (
            [{"name": "a", "from": "b"}, {"name": "b", "from": "a"}],
            "models[0].from: circular: a -> b -> a",
        ),
    ],
)
def test_bad_base_is_named(models: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate({"models": models})
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert not any("needs `path`" in p for p in caught.value.problems)
