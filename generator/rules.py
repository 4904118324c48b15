"""Rules that span models, checked on raw input: unique names, alias clashes, group
membership and presets' bases.

Lenient on purpose: they run even when field validation failed, so that every problem is
reported at once. Values of the wrong type are left to field validation (``settings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.generator.keys import spellings
from corral.generator.remote import peer_clashes


def conflicts(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rules that span models, checked on raw (possibly invalid) input.

    Lenient on purpose: it runs even when field validation failed, so that every problem is
    reported at once. Entries and values of the wrong type are left to field validation.
    """
    models = raw.get("models")
    # Keep each entry's own index, so that locations match field validation's.
    entries = (
        [(i, m) for i, m in enumerate(models) if isinstance(m, Mapping)]
        if isinstance(models, list)
        else []
    )
    groups = raw.get("groups")
    groups = groups if isinstance(groups, Mapping) else {}
    found = _name_clashes(entries)
    names = {e["name"] for _, e in entries if isinstance(e.get("name"), str)}
    member_of, membership = _group_members(groups, names)
    # Ollama's store joins the models when it is read (loader): until then, a preset may
    # name one of its models (corral generate runs where the store cannot be read).
    store = any(raw.get(key) for key in spellings("ollama_models"))
    found += membership + _preset_bases(entries, names, store) + peer_clashes(raw)
    for index, entry in entries:
        group, name = entry.get("group"), _text(entry.get("name"))
        if not isinstance(group, str):
            continue
        if group not in groups:
            found.append(
                (
                    f"models[{index}].group",
                    f"unknown group {group!r}; groups are {_listing({str(g) for g in groups})}",
                )
            )
        elif name in member_of and member_of[name] != group:
            found.append(
                (
                    f"models[{index}].group",
                    f"is {group!r}, but groups.{member_of[name]}.members lists this model too",
                )
            )
    return found


def _preset_bases(
    entries: list[tuple[int, Mapping[str, Any]]], names: set[str], store: bool
) -> list[tuple[str, str]]:
    """A preset's ``from`` must name another model, and presets may not go round in a circle."""
    found: list[tuple[str, str]] = []
    base_of = {
        e["name"]: e["from"]
        for _, e in entries
        if isinstance(e.get("name"), str) and isinstance(e.get("from"), str)
    }
    for index, entry in entries:
        base = entry.get("from")
        if not isinstance(base, str):
            continue
        if base not in names and store:
            continue  # the loader reports it if the store lacks it too
        if base not in names:
            found.append(
                (f"models[{index}].from", f"unknown model {base!r}; models are {_listing(names)}")
            )
            continue
        chain = [_text(entry.get("name"))]
        while base is not None and base not in chain:
            chain.append(base)
            base = base_of.get(base)
        if base is not None:
            found.append((f"models[{index}].from", f"circular: {' -> '.join([*chain, base])}"))
    return found


def _name_clashes(entries: list[tuple[int, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """Duplicate names, and aliases that are already another model's name or alias."""
    found: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    for index, entry in entries:
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        if name in owner:
            found.append((f"models[{index}].name", f"duplicate name {name!r}"))
        else:
            owner[name] = name
    for index, entry in entries:
        aliases = _first(entry, "aliases")
        if not isinstance(aliases, list):
            continue
        name = _text(entry.get("name"))
        for alias in aliases:
            if not isinstance(alias, str):
                continue
            if alias in owner and owner[alias] != name:
                found.append(
                    (
                        f"models[{index}].aliases",
                        f"alias {alias!r} is already the name or an alias of {owner[alias]!r}",
                    )
                )
            else:
                owner[alias] = name
    return found


def _group_members(
    groups: Mapping[str, Any], names: set[str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Which group each model is a member of, and members that are not (only) models."""
    found: list[tuple[str, str]] = []
    member_of: dict[str, str] = {}
    for group_name, group in groups.items():
        members = _first(group, "members") if isinstance(group, Mapping) else None
        if not isinstance(members, list):
            continue
        for member in members:
            if not isinstance(member, str):
                continue
            if member not in names:
                found.append(
                    (
                        f"groups.{group_name}.members",
                        f"{member!r} is not a model; models are {_listing(names)}",
                    )
                )
            elif member in member_of:
                found.append(
                    (
                        f"groups.{group_name}.members",
                        f"{member!r} is already a member of group {member_of[member]!r}",
                    )
                )
            else:
                member_of[member] = str(group_name)
    return member_of, found


def _text(value: Any) -> str:
    # A name of the wrong type is field validation's to report; here it only must not crash.
    return value if isinstance(value, str) else repr(value)


def _first(entry: Mapping[str, Any], field_name: str) -> Any:
    for key in spellings(field_name):
        if key in entry:
            return entry[key]
    return None


def _listing(names: set[str]) -> str:
    shown = sorted(names)
    return ", ".join(shown) if shown else "(none)"
