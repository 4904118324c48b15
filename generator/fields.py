"""The building blocks every settings model shares: the ``Strict`` base and the ``Name`` type.

Owns how a key may be spelled (snake_case or camelCase, nothing else) and what a model name
may look like. Kept apart from ``settings`` so that the models of other modules (``remote``)
can use them without importing ``settings``, which imports them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, StringConstraints

from corral.generator.keys import spellings

#: Model names: Ollama-style tags such as ``qwen2.5-coder:3b`` or ``org/model:q4``.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+-]*$"

#: A model name or alias; the pattern also lands in the JSON Schema.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


def _validation_alias(field_name: str) -> AliasChoices:
    return AliasChoices(*spellings(field_name))


class Strict(BaseModel):
    """Unknown keys are errors; snake_case and camelCase are both accepted."""

    model_config = ConfigDict(
        extra="forbid",
        # The aliases include the field's own name, so no populate_by_name is needed.
        alias_generator=AliasGenerator(validation_alias=_validation_alias),
        frozen=True,
        # YAML reads `CUDA_VISIBLE_DEVICES: 0` or `args: [--threads, 8]` as numbers; both
        # are meant as text, and rejecting them would only teach people to add quotes.
        coerce_numbers_to_str=True,
    )
