"""The one thing a pull reads from a GGUF's header: whether it carries a chat template.

Owns that question, answered with the ``gguf`` package (llama.cpp's own reader). It reads
nothing else and downloads nothing.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = "tokenizer.chat_template"


def has_chat_template(path: Path) -> bool:
    """True when the GGUF at ``path`` holds a non-empty ``tokenizer.chat_template``."""
    # Imported here: numpy comes with it, and only a finished pull needs it.
    from gguf import GGUFReader

    field = GGUFReader(path).get_field(CHAT_TEMPLATE)
    return field is not None and bool(field.contents())
