"""``Service`` in-process: what a reload applies, and what it says needs a restart."""

from __future__ import annotations

import logging

import pytest

from corral.generator.loader import validate
from corral.supervisor.service import Service

MODELS = [{"name": "a", "path": "a.gguf"}]


async def test_a_reload_names_the_changes_only_a_restart_applies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = validate({"models": MODELS, "port": 8000})
    new = validate({"models": MODELS, "port": 8001, "host": "0.0.0.0", "max_body_bytes": 5})
    service = Service(old, lambda: new, "test")
    with caplog.at_level(logging.INFO, logger="corral"):
        await service.reload()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("reload: host, port changed, which only a restart applies")
    assert service.config is new, "the rest (max_body_bytes here) applies at once"


async def test_a_reload_without_such_changes_says_nothing_of_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = validate({"models": MODELS})
    new = validate({"models": MODELS, "api_keys": ["k"]})
    service = Service(old, lambda: new, "test")
    with caplog.at_level(logging.INFO, logger="corral"):
        await service.reload()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert service.keys.required, "new keys apply to the next request"
