"""One model's settings, a group's and a device's: the entries of config.yaml's lists and maps.

Owns ``ModelConfig`` (a model's file or ``cmd``, its llama-server settings, request
defaults, memory), ``GroupConfig`` (llama-swap's swap/exclusive/persistent rules),
``DeviceConfig`` (a device's memory budget) and ``ByteSize``. The whole config, and the
rules that span several models, are ``settings``'; reading files is ``loader``'s.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from corral.generator import model_source
from corral.generator.fields import Name, Strict
from corral.generator.ollama_store import StoreModel
from corral.generator.remote import RpcAddress
from corral.generator.sizes import ACCEPTED, parse_size

#: Arguments that corral passes to every child itself; a model's ``args`` may not set them.
OWNED_ARGS = ("--port", "--host")


def _size(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise PydanticCustomError("size", "{message}", {"message": str(exc)}) from None


#: A memory size in bytes, written as bytes or with a unit ("24GiB", "512MiB", "24GB").
ByteSize = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[A-Za-z]*\s*$"},
            ],
            "description": ACCEPTED,
        }
    ),
]

#: Device names in ``devices``: the CPU's RAM, or a GPU by its index (CUDA_VISIBLE_DEVICES').
DEVICE_PATTERN = r"^(cpu|gpu[0-9]+)$"


class GroupConfig(Strict):
    """A set of models with llama-swap's group semantics.

    ``swap``: at most one member runs at a time. ``exclusive``: loading a member unloads
    models outside the group (unless they are in a persistent group). ``persistent``: other
    groups' exclusive loads never unload this group's members.
    """

    members: list[str] = Field(default_factory=list, description="Model names in this group.")
    swap: bool = Field(default=True, description="At most one member runs at a time.")
    exclusive: bool = Field(default=True, description="Loading a member unloads models outside it.")
    persistent: bool = Field(default=False, description="Never unloaded by another group's load.")


class DeviceConfig(Strict):
    """One device's memory budget."""

    memory: ByteSize = Field(
        description="Memory corral may fill with models on this device (before memory_margin)."
    )


def arg_flag(arg: str) -> str:
    """The flag one item of ``args`` sets: `--port=8080` and a whole `--port 8080` in one item
    set it just as `--port` does."""
    return re.split(r"[=\s]", arg.strip(), maxsplit=1)[0]


class ModelConfig(Strict):
    """One servable model: a GGUF file run by llama-server, or a custom ``cmd``."""

    # Editors that read the JSON Schema then flag an entry with neither, as validation does.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["path"]},
                {"required": ["cmd"]},
                {"required": ["from"]},
                {"required": ["source"]},
            ]
        }
    )

    name: Name = Field(
        description="Name clients use in the `model` field; Ollama-style tags allowed."
    )
    path: Path | None = Field(
        default=None,
        description=(
            "GGUF file; relative paths resolve against models_path. ollama:NAME: the model NAME "
            "of Ollama's store (ollama_models), with more set here."
        ),
    )
    source: str | None = Field(
        default=None,
        description=(
            "Where the GGUF comes from: ollama:NAME:TAG (or NAME:TAG), hf:owner/repo:QUANT, "
            "hf:owner/repo/file.gguf or an https URL; the file is models_path/<stem>.gguf "
            "unless `path` is set. `corral pull` and `corral lock` read it."
        ),
    )
    context_size: int = Field(default=4096, gt=0, description="Context window in tokens (-c).")
    gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="Layers offloaded to the GPU (-ngl); unset = llama-server's.",
    )
    memory: ByteSize | None = Field(
        default=None,
        description="Memory this model takes when loaded; unset = measured, else estimated.",
    )
    ttl: int | None = Field(
        default=None,
        ge=0,
        description="Seconds idle before unload; 0 = never; unset = default_ttl.",
    )
    aliases: list[Name] = Field(default_factory=list, description="Other names for this model.")
    args: list[str] = Field(
        default_factory=list, description="Extra llama-server arguments, one list item each."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    chat_template: str | None = Field(
        default=None,
        description="A llama.cpp built-in template name (e.g. gemma) or a template file.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Request defaults (temperature, top_p, ...) used when the client sets none.",
    )
    system_prompt: str | None = Field(
        default=None, description="System message prepended when the request has none."
    )
    group: str | None = Field(default=None, description="Name of the group this model belongs to.")
    preload: bool = Field(default=False, description="Start this model when corral starts.")
    unlisted: bool = Field(default=False, description="Servable, but hidden from model lists.")
    cmd: list[str] | None = Field(
        default=None,
        description="Escape hatch: run this command instead of llama-server; must contain {port}.",
    )
    rpc: list[RpcAddress] = Field(
        default_factory=list,
        description="rpc-server addresses (host:port) that share this model's layers (--rpc).",
    )
    concurrency: int = Field(
        default=8, gt=0, description="Requests forwarded to the child at once."
    )
    max_queue: int = Field(
        default=512, ge=0, description="Requests that may wait for this model before 503."
    )
    send_loading_state: bool = Field(
        default=False,
        description="While it loads, a streaming chat request gets progress as "
        "reasoning_content (OpenAI) or thinking (Ollama) before the answer.",
    )
    from_: str | None = Field(
        default=None,
        validation_alias="from",
        serialization_alias="from",
        description="Preset: reuse this model's file and settings, overriding what is set here.",
    )

    # Not a key of config.yaml: the loader marks the entries it took from Ollama's store.
    _ollama: StoreModel | None = PrivateAttr(default=None)

    @field_validator("cmd", mode="before")
    @classmethod
    def _split_cmd(cls, value: object) -> object:
        # A string is split like a shell would, but never run by one.
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("cmd")
    @classmethod
    def _cmd_has_port(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not any("{port}" in part for part in value):
            raise PydanticCustomError(
                "cmd_without_port",
                # pydantic fills {name} from the context, with no escapes and no !r.
                "must contain the {placeholder} placeholder, got {cmd}",
                {"placeholder": "{port}", "cmd": repr(shlex.join(value))},
            )
        return value

    @field_validator("source")
    @classmethod
    def _source_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                model_source.parse(value)
            except model_source.SourceSyntaxError as exc:
                raise PydanticCustomError("bad_source", "{why}", {"why": str(exc)}) from None
        return value

    @field_validator("args")
    @classmethod
    def _args_not_owned(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg_flag(arg)
            if flag in OWNED_ARGS:
                raise PydanticCustomError(
                    "owned_arg",
                    "must not set {flag} (corral gives each child its own), got {arg}",
                    {"flag": flag, "arg": repr(arg)},
                )
        return value

    @model_validator(mode="after")
    def _path_or_cmd(self) -> ModelConfig:
        # A preset whose base is missing is reported by rules, naming the bad `from`.
        if self.path is None and self.cmd is None and self.from_ is None and self.source is None:
            raise PydanticCustomError(
                "no_path",
                "needs `path` (a GGUF file), `source` (where to download it from) "
                "or `cmd` (a command with {placeholder})",
                {"placeholder": "{port}"},
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """The name and every alias: all that routes to this model."""
        return (self.name, *self.aliases)

    @property
    def ollama(self) -> StoreModel | None:
        """The model of Ollama's store this entry serves (its digest is the store's); None
        for every other entry. Set by the loader, never by the config."""
        return self._ollama
