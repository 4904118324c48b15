"""Turning validation failures into messages a person can act on.

Owns the wording: every message names its place (``models[2].context_size``), the bad value
and what is allowed, and where a value came from when that was not the file (``env PORT``).
It does not decide what is valid (see ``settings``) nor read any input (see ``loader``).
"""

from __future__ import annotations

import difflib
import types
import typing
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from corral.generator.keys import spellings


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` holds one located message each."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}")


def location(loc: Iterable[int | str]) -> str:
    """``('models', 2, 'context_size')`` -> ``models[2].context_size``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = _printable(str(part))
            out += f".{text}" if out else text
    return out


def _printable(text: str) -> str:
    """A key as one line: control characters and line breaks escaped, nothing else."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in ("Cc", "Zl", "Zp")
        else c
        for c in text
    )


def describe(
    error: Mapping[str, Any],
    model: type[BaseModel],
    origins: Mapping[str, str] | None = None,
) -> str:
    """One pydantic error as ``place: what is wrong, got value``.

    ``origins`` maps a top-level key to where its value came from (``{"port": "env PORT"}``):
    a bad value that is not in the file must say so, or people search the file in vain.
    """
    loc = tuple(error["loc"])
    text = _what(error, model)
    origin = (origins or {}).get(str(loc[0])) if loc else None
    if origin:
        text += f" (from {origin})"
    return f"{location(loc)}: {text}" if loc else text


def from_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    skip: Iterable[str] = (),
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """Every error in ``exc`` as a located message, minus the error types in ``skip``."""
    skipped = set(skip)
    return [describe(e, model, origins) for e in exc.errors() if e["type"] not in skipped]


def _what(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """The part of a message after the location."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key; {_did_you_mean(str(loc[-1]), model, loc[:-1])}"
    if kind == "missing":
        return "required key is missing"
    messages = {
        "greater_than": f"must be > {_bound(ctx.get('gt'))}, got {value!r}",
        "greater_than_equal": f"must be >= {_bound(ctx.get('ge'))}, got {value!r}",
        "less_than_equal": f"must be <= {_bound(ctx.get('le'))}, got {value!r}",
        "int_parsing": f"must be an integer, got {value!r}",
        "int_type": f"must be an integer, got {value!r}",
        "int_from_float": f"must be a whole number, got {value!r}",
        "float_parsing": f"must be a number, got {value!r}",
        "float_type": f"must be a number, got {value!r}",
        "bool_parsing": f"must be true or false, got {value!r}",
        "bool_type": f"must be true or false, got {value!r}",
        "string_type": f"must be a string, got {value!r}",
        "list_type": f"must be a list, got {value!r}",
        "dict_type": f"must be a mapping, got {value!r}",
        "model_type": f"must be a mapping, got {value!r}",
        "model_attributes_type": f"must be a mapping, got {value!r}",
        "path_type": f"must be a file path, got {value!r}",
        "string_pattern_mismatch": (
            f"{value!r} may use only letters, digits and . _ : / + - "
            "and must start with a letter or digit"
        ),
        "string_too_short": f"must not be empty, got {value!r}",
        # pydantic's own wording is "Input should be 'a' or 'b'"; keep corral's shape.
        "literal_error": f"must be one of {ctx.get('expected')}, got {value!r}",
    }
    return messages.get(kind) or f"{error['msg'][:1].lower()}{error['msg'][1:]}"


def _bound(limit: Any) -> Any:
    # A float field's bound reads 0.0; people wrote, and think, 0.
    return int(limit) if isinstance(limit, float) and limit.is_integer() else limit


def _did_you_mean(key: str, model: type[BaseModel], parent: Sequence[int | str]) -> str:
    """A hint for an unknown key: the closest known spelling, else the list of keys."""
    inner = _model_at(model, parent)
    if inner is None:
        return "remove it"
    known = {s: name for name, field in inner.model_fields.items() for s in _accepted(name, field)}
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    names = [_accepted(name, field)[0] for name, field in inner.model_fields.items()]
    return f"known keys: {', '.join(names)}"


def _accepted(name: str, field: Any) -> tuple[str, ...]:
    """The spellings a field is accepted under: its own alias (``from_`` -> ``from``) wins."""
    alias = field.validation_alias
    return (alias,) if isinstance(alias, str) else spellings(name)


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping found at ``loc`` inside ``model``."""
    current: Any = model
    for part in loc:
        current = _unwrap_optional(current)
        origin = typing.get_origin(current)
        if origin in (list, tuple, set, frozenset):
            current = typing.get_args(current)[0]
        elif origin is dict:
            # The part is a dict key (a group's name): step into the value's type.
            current = typing.get_args(current)[1]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            by_spelling = {
                s: f for name, f in current.model_fields.items() for s in spellings(name)
            }
            field = by_spelling.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            return None
    current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation
