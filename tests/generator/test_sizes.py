"""Memory sizes: parsed from what people write, validated where they wrote it."""

from __future__ import annotations

import pytest

from corral.generator import loader
from corral.generator.problems import ConfigError
from corral.generator.sizes import format_size, parse_size

GIB = 1024**3
MIB = 1024**2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * GIB),
        ("24 GiB", 24 * GIB),
        ("512MiB", 512 * MIB),
        ("512mib", 512 * MIB),
        ("24GB", 24_000_000_000),
        ("1.5G", int(1.5 * GIB)),
        ("16g", 16 * GIB),
        ("1000", 1000),
        (4096, 4096),
        (0, 0),
    ],
)
def test_sizes_parse_to_bytes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["24 parsecs", "GiB", "-1GiB", "", -5, True, None, [1]])
def test_bad_sizes_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        parse_size(bad)


def test_sizes_print_in_binary_units() -> None:
    assert format_size(24 * GIB) == "24.0 GiB"
    assert format_size(235.16 * MIB) == "235.2 MiB"
    assert format_size(512) == "512 B"


def test_devices_and_memory_load_from_config() -> None:
    config = loader.validate(
        {
            "devices": {"gpu0": {"memory": "24GiB"}, "cpu": {"memory": 16 * GIB}},
            "memoryMargin": "1GiB",
            "maxSwapWait": 3,
            "models": [{"name": "a", "path": "a.gguf", "memory": "3.5GB"}],
        },
        "test",
    )
    assert {name: d.memory for name, d in config.devices.items()} == {
        "gpu0": 24 * GIB,
        "cpu": 16 * GIB,
    }
    assert config.memory_margin == GIB
    assert config.max_swap_wait == 3
    assert config.models[0].memory == 3_500_000_000


def test_memory_settings_have_defaults() -> None:
    config = loader.validate({}, "test")
    assert config.devices == {}
    assert config.memory_margin == 512 * MIB
    assert config.max_swap_wait == 10
    assert config.state_dir is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"devices": {"gpu0": {"memory": "24 parsecs"}}},
            "devices.gpu0.memory: must be a number of bytes or a size such as 24GiB",
        ),
        ({"devices": {"gpu0": {}}}, "devices.gpu0.memory: required key is missing"),
        ({"devices": {"vram": {"memory": "1G"}}}, "devices: 'vram' is not a device; use cpu"),
        ({"memory_margin": -1}, "memory_margin: must be >= 0, got -1"),
        ({"max_swap_wait": -1}, "max_swap_wait: must be >= 0, got -1"),
        (
            {"models": [{"name": "a", "path": "a", "memory": "lots"}]},
            "models[0].memory: must be a number of bytes",
        ),
    ],
)
def test_bad_memory_settings_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loader.validate(raw, "test")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
