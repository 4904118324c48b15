"""Key spellings: every key has a snake_case name (config.yaml), a camelCase name (the JSON
the NixOS module hands over) and, for a few, the Nix option's own name.

Owns only that mapping, so that the models (``settings``) and the rules checked on raw input
(``rules``) agree on it.
"""

from __future__ import annotations

from pydantic.alias_generators import to_camel

# Keys whose camelCase spelling is not the mechanical one (Nix option names).
EXTRA_ALIASES: dict[str, tuple[str, ...]] = {
    "default_ttl": ("defaultTTL",),
    "args": ("extraArgs", "extra_args"),
    "ttl": ("TTL",),
}

# The NixOS module's name of a key, where it is not the mechanical camelCase.
_NIX_NAMES = {"default_ttl": "defaultTTL", "args": "extraArgs"}


def nix_name(key: str) -> str:
    """The spelling a NixOS user writes: ``context_size`` -> ``contextSize``."""
    return _NIX_NAMES.get(key) or to_camel(key)


def spellings(field_name: str) -> tuple[str, ...]:
    """Every accepted spelling of a key: snake_case, camelCase and Nix's own names."""
    names = [field_name, to_camel(field_name), *EXTRA_ALIASES.get(field_name, ())]
    return tuple(dict.fromkeys(names))
