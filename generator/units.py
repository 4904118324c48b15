"""The hardened systemd unit that runs ``corral serve``.

Owns the service's settings (``ServiceSettings``: identity, accelerator, extra paths) and the
decisions that turn them and the runtime config into unit text: which paths to bind into the
sandbox, which groups a GPU needs, whether the IP firewall can close, how values are quoted.
The unit's wording lives in templates/corral.service.j2. It does not validate the runtime
config (``settings``), write files (``cli``) or install anything (the NixOS module does).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os.path
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import jinja2
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from corral.generator import outbound
from corral.generator.problems import ConfigError, describe
from corral.generator.settings import RESTART_KEYS, Config, Strict, is_loopback

#: The accelerators, in one list that the NixOS module reads too (its acceleration option's
#: enum): accelerations.json, shipped beside this file.
ACCELERATIONS: tuple[str, ...] = tuple(
    json.loads((Path(__file__).parent / "accelerations.json").read_text(encoding="utf-8"))
)

#: SupplementaryGroups= when none are declared: /dev/kfd and /dev/dri/renderD* are often
#: group render (mode 0660), /dev/dri/card* group video; NVIDIA's nodes are 0666.
GPU_GROUPS: dict[str, tuple[str, ...]] = dict.fromkeys(ACCELERATIONS, ())
GPU_GROUPS.update(rocm=("render", "video"), vulkan=("render", "video"))
#: Trees the sandbox hides (ProtectHome=, PrivateTmp=): paths there must be bound in.
HIDDEN_TREES = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")

_UNIT_NAME = re.compile(r"(?!.*\.service$)[A-Za-z0-9:_.-]+")
_ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STATE_DIR = re.compile(r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_ONE_LINE = re.compile(r"[^\x00-\x1f\x7f]+")
# Arguments made only of these need no quotes in ExecStart= (after % and $ are doubled).
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_@+=,./-]+")
# Inside "..." systemd reads C escapes: these keep quotes, backslashes and control characters.
_C_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_C_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t"})


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
    if not value.is_absolute() or not _ONE_LINE.fullmatch(str(value)):
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
OneLine = Annotated[str, _matching(_ONE_LINE, "must be one non-empty line")]
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


def quote_arg(arg: str, *, program: bool = False) -> str:
    """One ExecStart= word, so that systemd hands the program exactly ``arg``."""
    if arg == ";":
        return "\\;"  # a lone ; would end the command
    # % starts a specifier anywhere, even inside quotes; $ a variable, but not in the program.
    doubled = arg.replace("%", "%%").replace("$", "$" if program else "$$")
    return doubled if _PLAIN_ARG.fullmatch(arg) else f'"{_c_escape(doubled)}"'


def quote_env(key: str, value: str) -> str:
    """One Environment= assignment: $ is literal there, % is still a specifier."""
    return f'"{_c_escape(f"{key}={value}".replace("%", "%%"))}"'


def quote_path(path: str, *, bind: bool = False) -> str:
    """A path in a *Paths= list; the ``-`` lets the unit start while it is still missing."""
    text = path.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    # In Bind*Paths= a : separates the source from the target.
    text = text.replace(":", "\\:") if bind else text
    return f"-{text}" if _PLAIN_PATH.fullmatch(path) else f'"-{text}"'


def _c_escape(text: str) -> str:
    return text.translate(_C_ESCAPES)


def _clean(path: Path | str) -> str:
    text = os.path.normpath(str(path))
    if not _ONE_LINE.fullmatch(text):
        raise ConfigError([f"path {text!r} contains control characters; a unit cannot name it"])
    return text


def _under(path: str, trees: Iterable[str]) -> bool:
    return any(path == tree or path.startswith(tree.rstrip("/") + "/") for tree in trees)


def _outermost(paths: Iterable[str]) -> list[str]:
    """Sorted, without duplicates and without paths inside another listed path."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not _under(path, kept):
            kept.append(path)
    return kept


def read_paths(service: ServiceSettings, config: Config) -> list[str]:
    """Every path corral or its children must read: config, models, key file, programs."""
    models = [m.path.parent for m in config.models if m.path]
    found = [service.config_path, *service.read_only_paths, *models]
    found += [p for p in (config.models_path, config.api_key_file) if p is not None]
    found += [p.api_key_file for p in config.peers.values() if p.api_key_file is not None]
    paths = [_clean(p) for p in found if p.is_absolute()]
    for program in (service.command[0], config.llama_server or ""):
        if _under(program, HIDDEN_TREES):
            paths.append(_program_prefix(_clean(program)))
    return _outermost(paths)


def _program_prefix(program: str) -> str:
    # A program in .../bin needs its whole prefix (a venv, ~/.local): the interpreter and the
    # site-packages it imports sit beside bin/. Never widen that to a whole home or /tmp.
    path = PurePosixPath(program)
    wider = [path.parent.parent] if path.parent.name == "bin" else []
    for candidate in (*wider, path.parent, path):
        home = str(candidate.parent) in ("/home", "/run/user")
        if not home and str(candidate) not in HIDDEN_TREES:
            return str(candidate)
    return program


def restart_triggers(config: Config, host: str, port: str) -> str:
    """The values of ``RESTART_KEYS`` as one line: the unit changes whenever one of them does."""
    values = {**config.model_dump(include=set(RESTART_KEYS)), "host": host, "port": port}
    return " ".join(f"{key}={values[key]}" for key in RESTART_KEYS).replace("%", "%%")


def unit_context(service: ServiceSettings, config: Config) -> dict[str, Any]:
    """Everything the template needs, decided here so that the template only formats."""
    # The seed's HOST and PORT variables override config.yaml at run time, so here too.
    host = service.environment.get("HOST") or config.host
    port = service.environment.get("PORT") or str(config.port)
    hidden_ro = [p for p in read_paths(service, config) if _under(p, HIDDEN_TREES)]
    writable = _outermost(_clean(p) for p in service.read_write_paths)
    hidden_rw = [p for p in writable if _under(p, HIDDEN_TREES)]
    # ProtectHome=yes leaves no /home to bind into; tmpfs gives an empty one.
    in_home = any(_under(p, HIDDEN_TREES[:3]) for p in hidden_ro + hidden_rw)
    remote = outbound.remote_hosts(config)
    reach = outbound.allowed(remote, service.ip_address_allow)
    return {
        "service": service,
        "description": service.description.replace("%", "%%"),
        "loopback": is_loopback(host),
        "ip_allow": " ".join(dict.fromkeys(["localhost", *service.ip_address_allow, *reach])),
        # rpc-servers and peers: IPAddressAllow= opens both ways, so they could connect too.
        "remote": remote,
        "reach": " ".join(["localhost", *reach]),
        "ip_open": "any" in service.ip_address_allow or not service.ip_address_allow,
        # An address that is not 0.0.0.0 or :: exists only once the network is up.
        "wait_online": not is_loopback(host) and host.strip("[]") not in ("0.0.0.0", "::"),
        "privileged_port": port.isdigit() and int(port) < 1024,
        "exec_start": " ".join(quote_arg(a, program=i == 0) for i, a in enumerate(service.command)),
        "exec_reload": f"{quote_arg(str(service.kill_bin), program=True)} -HUP $MAINPID",
        "environment": [quote_env(k, v) for k, v in service.environment.items()],
        "groups": service.supplementary_groups,
        "restart_triggers": restart_triggers(config, host, port),
        "open_files": config.open_files,
        # %S is the specifier of /var/lib (quote_env would make it literal); state_directory
        # holds no characters that need quoting.
        "cache_environment": [
            f"CUDA_CACHE_PATH=%S/{service.state_directory}/cache/cuda",
            f"MESA_SHADER_CACHE_DIR=%S/{service.state_directory}/cache/mesa",
        ],
        "gpu": service.acceleration != "cpu",
        "private_devices": service.acceleration == "cpu" and not service.device_allow,
        "protect_home": "tmpfs" if in_home else "yes",
        "bind_read_only": [quote_path(p, bind=True) for p in hidden_ro],
        "bind_read_write": [quote_path(p, bind=True) for p in hidden_rw],
        "read_write": [quote_path(p) for p in writable if p not in hidden_rw],
    }


def render_units(service: ServiceSettings, config: Config) -> dict[str, str]:
    """``{filename: text}`` for every unit corral needs; today one ``<name>.service``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    text = env.get_template("corral.service.j2").render(unit_context(service, config))
    return {f"{service.name}.service": text}
