"""keep_alive's grammar: Ollama's numbers and Go durations, in seconds, or a located 400."""

from __future__ import annotations

import pytest

from corral.supervisor.errors import BadRequest
from corral.supervisor.http import keep_alive


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        ("0", 0.0),
        (300, 300.0),
        (2.5, 2.5),
        ("300", 300.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        (" 10s ", 10.0),
        ("+2m", 120.0),
    ],
)
def test_durations_and_plain_seconds(value: object, seconds: float) -> None:
    assert keep_alive.parse(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-1m", "-5h"])
def test_any_negative_means_forever_spelled_minus_one(value: object) -> None:
    assert keep_alive.parse(value) == -1.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("soon", "'soon'"),
        ("5 minutes", "'5 minutes'"),
        ("5x", "'5x'"),
        ("m", "'m'"),
        ("5m3", "'5m3'"),
        ("", "''"),
        (True, "true"),
        ([5], "a list"),
        ({"m": 5}, "an object"),
        (float("nan"), "nan"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(value: object, shown: str) -> None:
    with pytest.raises(BadRequest) as caught:
        keep_alive.parse(value, where="body.keep_alive")
    message = caught.value.message
    assert message.startswith("body.keep_alive: must be ")
    assert '"5m"' in message and "negative" in message
    assert message.endswith(f"got {shown}")
    assert caught.value.status == 400


def test_take_removes_the_field_so_it_is_never_forwarded() -> None:
    body = {"model": "m", "keep_alive": "10s"}
    assert keep_alive.take(body) == 10.0
    assert body == {"model": "m"}


def test_take_of_absent_or_null_is_none_and_null_is_still_removed() -> None:
    assert keep_alive.take({"model": "m"}) is None
    body = {"model": "m", "keep_alive": None}
    assert keep_alive.take(body) is None
    assert "keep_alive" not in body


def test_take_raises_for_a_bad_value() -> None:
    with pytest.raises(BadRequest, match="keep_alive: must be"):
        keep_alive.take({"keep_alive": "later"})
