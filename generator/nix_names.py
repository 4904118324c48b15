"""Problems as a NixOS user reads them: at the option they wrote, with camelCase hints.

Owns the renaming of a located problem (``models."a".ttl: …``) to the option it came from
(``services.corral.models."a".ttl: …``, or ``services.corral.settings.…`` for a key given
through ``settings``), by the locations the module hands ``generate``; and an unknown key's
hint in the module's spelling. It finds no problem itself (``problems``, ``loader``).
"""

from __future__ import annotations

import re

from corral.generator.keys import nix_name

#: A problem that starts with a location: a key, then `.`, `[` or `:`.
_LOCATED = re.compile(r"[A-Za-z_]\w*[.\[:]")


def relocate(problems: list[str], locations: dict[str, str]) -> list[str]:
    """Each problem with the longest matching prefix of ``locations`` replaced by its value.

    ``models."a".ttl: …`` with ``{"": "services.corral."}`` reads
    ``services.corral.models."a".ttl: …``: the option the user wrote, not a key in a file
    they never saw.
    """
    renamed = []
    for problem in problems:
        # A problem about no key ("path '…' contains control characters") keeps its words.
        located = _LOCATED.match(problem) is not None
        prefixes = [p for p in locations if located and problem.startswith(p)]
        longest = max(prefixes, key=len, default=None)
        if longest is None:
            renamed.append(problem)
        else:
            renamed.append(_nix_hints(locations[longest] + problem[len(longest) :]))
    return renamed


#: The key names that a hint for an unknown key offers (``problems._did_you_mean``).
_HINT = re.compile(r"(known keys: |did you mean )([\w, ]+)(\??)$")


def _nix_hints(problem: str) -> str:
    """An unknown key's hint in the NixOS module's spelling (camelCase), as its user writes."""

    def rename(found: re.Match[str]) -> str:
        names = ", ".join(nix_name(n) for n in found[2].split(", "))
        return f"{found[1]}{names}{found[3]}"

    return _HINT.sub(rename, problem)
