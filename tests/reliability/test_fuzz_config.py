"""Property tests for the config models: any mapping either validates, or fails with located
one-line messages. Never a traceback, whatever the types, spellings or unknown keys.

The mappings are built from the keys corral knows (in every accepted spelling), keys it does
not, plausible values and values of any JSON type, so that a good share validates and the
rest fails in every way a hand-written or Nix-generated file can.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.generator.keys import spellings
from corral.generator.loader import validate
from corral.generator.model_settings import GroupConfig, ModelConfig
from corral.generator.problems import ConfigError
from corral.generator.settings import Config

EXAMPLES = 300
NAMES = ["m", "qwen2.5-coder:3b", "org/model:q4", "gemma-3-270m", "a.b+c"]

# Printable text: a key with a control character is tested on its own (below).
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)

PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(NAMES),
    "from_": st.sampled_from(NAMES),
    "path": st.sampled_from(["models/x.gguf", "/abs/y.gguf", "~/z.gguf", ""]),
    "cmd": st.sampled_from(["fake --port {port}", ["fake", "{port}"], "no-port", []]),
    "args": st.lists(st.sampled_from(["--threads", "8", "--port=1", "--host 0.0.0.0"])),
    "aliases": st.lists(st.sampled_from([*NAMES, "bad name", ""]), max_size=3),
    "members": st.lists(st.sampled_from(NAMES), max_size=3),
    "group": st.sampled_from(["g", "h", "missing"]),
    "port": st.integers(-1, 70000),
    "host": st.sampled_from(["127.0.0.1", "0.0.0.0", "", "::1"]),
}


def value_for(field: str) -> st.SearchStrategy[Any]:
    """A plausible value for ``field`` most of the time, anything JSON otherwise."""
    plausible = PLAUSIBLE.get(field, st.integers(-2, 100_000) | st.booleans() | TEXT)
    return st.one_of(plausible, plausible, JSON)


def entries(fields: list[str], required: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """A mapping over ``fields`` (any spelling), plus now and then an unknown key."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=5))
        out: dict[str, Any] = {}
        for field in [*required, *chosen]:
            key = draw(st.sampled_from(spellings(field) if field != "from_" else ("from",)))
            out[key] = draw(value_for(field))
        if draw(st.integers(0, 5)) == 0:
            out[draw(TEXT)] = draw(JSON)
        return out

    return build()


MODEL = entries(list(ModelConfig.model_fields), required=("name",)) | JSON
GROUP = entries(list(GroupConfig.model_fields)) | JSON
TOP_FIELDS = [f for f in Config.model_fields if f not in ("models", "groups")]
TOP = entries(TOP_FIELDS)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = draw(TOP)
    shape = draw(st.sampled_from(["list", "attrset", "json", "absent"]))
    if shape == "list":
        raw["models"] = draw(st.lists(MODEL, max_size=4))
    elif shape == "attrset":  # the NixOS module's shape: models keyed by name
        raw["models"] = draw(st.dictionaries(st.sampled_from(NAMES) | TEXT, MODEL, max_size=3))
    elif shape == "json":
        raw["models"] = draw(JSON)
    if draw(st.booleans()):
        raw["groups"] = draw(st.dictionaries(st.sampled_from(["g", "h"]) | TEXT, GROUP) | JSON)
    return raw


def located(problem: str, raw: dict[str, Any]) -> bool:
    """Whether ``problem`` starts with a top-level key of ``raw`` and then its place in it."""
    return any(re.match(re.escape(str(key)) + r"[.:\[]", problem) for key in raw)


def check(raw: dict[str, Any], outcomes: Counter[str]) -> None:
    try:
        validate(raw)
    except ConfigError as exc:
        outcomes["invalid"] += 1
        assert exc.problems, f"a ConfigError without problems for {raw!r}"
        for problem in exc.problems:
            assert isinstance(problem, str)
            assert "\n" not in problem and "\r" not in problem, f"not one line: {problem!r}"
            assert located(problem, raw), f"not located: {problem!r} for {raw!r}"
    else:
        outcomes["valid"] += 1


def test_any_mapping_validates_or_fails_with_located_messages() -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(configs())
    def run(raw: dict[str, Any]) -> None:
        check(raw, outcomes)

    run()
    print(f"config fuzz: {sum(outcomes.values())} cases, {dict(outcomes)}")
    # Both branches were exercised: a strategy that only ever fails would prove little.
    assert outcomes["valid"] > 0 and outcomes["invalid"] > 0, outcomes


@pytest.mark.parametrize(
    "raw",
    [{"a\nb": 1}, {"models": [{"name": "m", "cmd": "x {port}", "k\ney": 1}]}],
    ids=["top-level key", "model key"],
)
def test_a_key_with_a_newline_is_reported_on_one_line(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    assert all("\n" not in p for p in caught.value.problems), caught.value.problems


def test_a_misspelled_from_suggests_the_accepted_spelling() -> None:
    with pytest.raises(ConfigError) as caught:
        validate({"models": [{"name": "m", "cmd": "x {port}", "fro": "m"}]})
    assert caught.value.problems == ["models[0].fro: unknown key; did you mean from?"]
