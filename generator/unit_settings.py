"""What the systemd unit of ``corral serve`` may be told: ``ServiceSettings`` and its field types.

Owns the service section's settings (identity, accelerator, extra paths, the IP firewall's
networks) with the types that keep a value from breaking a unit line (one line, an absolute
path, an account or unit name, an IP prefix) and the list of accelerations. It renders no
unit text (``units`` does) and does not validate the runtime config (``settings``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from corral.generator.problems import ConfigError, describe
from corral.generator.settings import Strict

#: The accelerators, in one list that the NixOS module reads too (its acceleration option's
#: enum): accelerations.json, shipped beside this file.
ACCELERATIONS: tuple[str, ...] = tuple(
    json.loads((Path(__file__).parent / "accelerations.json").read_text(encoding="utf-8"))
)

#: SupplementaryGroups= when none are declared: /dev/kfd and /dev/dri/renderD* are often
#: group render (mode 0660), /dev/dri/card* group video; NVIDIA's nodes are 0666.
GPU_GROUPS: dict[str, tuple[str, ...]] = dict.fromkeys(ACCELERATIONS, ())
GPU_GROUPS.update(rocm=("render", "video"), vulkan=("render", "video"))

_UNIT_NAME = re.compile(r"(?!.*\.service$)[A-Za-z0-9:_.-]+")
_ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STATE_DIR = re.compile(r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
ONE_LINE = re.compile(r"[^\x00-\x1f\x7f]+")


def _fail(kind: str, message: str, **ctx: object) -> PydanticCustomError:
    # pydantic fills {name} with str(value); the values are quoted here, as problems.py does.
    return PydanticCustomError(kind, message, {k: repr(v) for k, v in ctx.items()})


def _known_acceleration(value: object) -> object:
    if value not in ACCELERATIONS:
        allowed = ", ".join(ACCELERATIONS)
        raise _fail("bad_acceleration", f"must be one of {allowed}, got {{v}}", v=value)
    return value


#: One of ACCELERATIONS; the error lists them (pydantic's own str check would not).
Acceleration = Annotated[str, BeforeValidator(_known_acceleration)]


def _absolute(value: Path) -> Path:
    if not value.is_absolute() or not ONE_LINE.fullmatch(str(value)):
        raise _fail("not_absolute", "must be an absolute path, got {p}", p=str(value))
    return value


#: systemd's own names for address sets (IPAddressAllow=).
_IP_SETS = ("any", "localhost", "link-local", "multicast")
#: Where a corral bound beyond loopback may be reached from by default: the local networks
#: (RFC 1918, CGNAT as Tailscale uses, IPv6 unique-local, link-local), not the internet.
LOCAL_NETWORKS = (
    "link-local",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


def _ip_prefix(value: str) -> str:
    if value in _IP_SETS:
        return value
    with contextlib.suppress(ValueError):
        ipaddress.ip_network(value, strict=False)
        return value
    raise _fail("bad_ip", "must be an address or prefix like 10.0.0.0/8, got {v}", v=value)


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise _fail("bad_value", rule + ", got {v}", v=value)
        return value

    return AfterValidator(check)


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
Account = Annotated[str, _matching(_ACCOUNT, "may use only letters, digits and _ . -")]
OneLine = Annotated[str, _matching(ONE_LINE, "must be one non-empty line")]
UnitName = Annotated[
    str, _matching(_UNIT_NAME, "may use only letters, digits and : _ . -, without .service")
]
EnvName = Annotated[str, _matching(_ENV_KEY, "may use only letters, digits and _")]
StateDir = Annotated[str, _matching(_STATE_DIR, "must be a relative path under /var/lib")]
IpPrefix = Annotated[str, AfterValidator(_ip_prefix)]


class ServiceSettings(Strict):
    """How corral runs as a systemd service: identity, devices and the command line."""

    name: UnitName = Field("corral", description="Unit name, without .service.")
    description: OneLine = Field(
        "corral: local GGUF models on demand behind one OpenAI/Ollama endpoint",
        description="The unit's Description=.",
    )
    corral_bin: AbsolutePath = Field(
        default_factory=lambda: Path(shutil.which("corral") or "/usr/bin/corral").absolute(),
        description="The corral executable; default: `corral` on PATH, else /usr/bin/corral.",
    )
    config_path: AbsolutePath = Field(description="Where config.yaml lives at run time.")
    exec_start: list[str] | None = Field(
        None, description="ExecStart= as a list or a shell-like string; unset = corral serve."
    )
    kill_bin: AbsolutePath = Field(Path("/bin/kill"), description="kill for ExecReload= (HUP).")
    user: Account | None = Field(None, description="Run as this user; unset = DynamicUser=yes.")
    group: Account | None = Field(None, description="Primary group; unset = the user's own.")
    extra_groups: list[Account] | None = Field(
        None, description="SupplementaryGroups=; unset = render and video for rocm and vulkan."
    )
    acceleration: Acceleration = Field(
        "cpu",
        description="cpu, cuda, rocm or vulkan: decides which devices the unit may open.",
        json_schema_extra={"enum": list(ACCELERATIONS)},
    )
    environment: dict[EnvName, str] = Field(
        default_factory=dict, description="Extra environment variables for corral."
    )
    state_directory: StateDir = Field(
        "corral", description="StateDirectory=: writable, and the working directory."
    )
    read_only_paths: list[AbsolutePath] = Field(
        default_factory=list, description="More paths corral may read (bound in if hidden)."
    )
    read_write_paths: list[AbsolutePath] = Field(
        default_factory=list, description="Paths corral may write (bound in if hidden)."
    )
    ip_address_allow: list[IpPrefix] = Field(
        default_factory=lambda: list(LOCAL_NETWORKS),
        description="Non-loopback host: the networks that may connect (IPAddressAllow=, plus "
        "localhost). Default: the local networks (10/8, 172.16/12, 192.168/16, 100.64/10, "
        "fc00::/7, link-local); [any] opens it to every address.",
    )
    device_allow: list[OneLine] = Field(
        default_factory=list, description="More DeviceAllow= entries, e.g. `/dev/dxg rw` (WSL)."
    )
    socket_activation: bool = Field(
        False,
        description="Render <name>.socket too: systemd listens, and starts corral on the first "
        "connection (with idle_exit, corral exits again when idle).",
    )

    @field_validator("exec_start", mode="before")
    @classmethod
    def _command(cls, value: object) -> object:
        # A string is split as a shell would, but never run by one.
        argv = shlex.split(value) if isinstance(value, str) else value
        if isinstance(argv, list) and not (argv and str(argv[0]).startswith("/")):
            absolute = "must start with an absolute program path (systemd searches no $PATH)"
            raise _fail("relative_program", absolute + ", got {v}", v=value)
        return argv

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any], source: str = "settings") -> ServiceSettings:
        """Validate the ``service`` section; problems come back located as ``service.<key>``."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            # A bad dict key is located at ('environment', 'A-B', '[key]'): drop the marker.
            errors = [{**e, "loc": [p for p in e["loc"] if p != "[key]"]} for e in exc.errors()]
            problems = [f"service{'.' if e['loc'] else ': '}{describe(e, cls)}" for e in errors]
            raise ConfigError(problems, source) from None

    @property
    def command(self) -> list[str]:
        """The ExecStart= argument vector."""
        default = [str(self.corral_bin), "serve", "--config", str(self.config_path)]
        return list(self.exec_start or default)  # validation rejects an empty exec_start

    @property
    def supplementary_groups(self) -> list[str]:
        """Declared groups, else the ones the accelerator's device nodes need."""
        groups = GPU_GROUPS[self.acceleration] if self.extra_groups is None else self.extra_groups
        return list(groups)
