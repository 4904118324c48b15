"""The hardened systemd unit of an RPC worker: llama.cpp's ``rpc-server`` on a chosen address.

Owns the worker's settings (``RpcWorkerSettings``), its argv, its unit text (from
templates/rpc-server.service.j2, which shares the device and confinement parts with corral's
own unit) and the ``corral rpc-worker`` command that writes it. ``rpc-server`` has no
authentication: anyone who reaches its port can run code on its devices, so it binds the
address it is given (there is no default host) and its IP firewall admits only the local
networks unless told otherwise. It does not run corral: a worker box needs none.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click
import jinja2
from pydantic import Field, ValidationError

from corral.generator.problems import ConfigError, describe
from corral.generator.settings import Strict, is_loopback
from corral.generator.unit_settings import (
    ACCELERATIONS,
    GPU_GROUPS,
    LOCAL_NETWORKS,
    AbsolutePath,
    Acceleration,
    Account,
    EnvName,
    IpPrefix,
    OneLine,
    UnitName,
)
from corral.generator.units import quote_arg, quote_env

#: llama.cpp's own default port for rpc-server.
DEFAULT_PORT = 50052


#: The worker's names, as installed: llama.cpp's own build (rpc-server), nixpkgs' llama-cpp
#: (llama-rpc-server: its postInstall renames it), newer llama.cpp builds (ggml-rpc-server).
RPC_SERVER_NAMES = ("rpc-server", "llama-rpc-server", "ggml-rpc-server")


def _rpc_server_on_path() -> Path:
    found = next((p for p in map(shutil.which, RPC_SERVER_NAMES) if p is not None), None)
    return Path(found or "/usr/bin/rpc-server")


class RpcWorkerSettings(Strict):
    """One rpc-server: where it listens, which devices it offers, and how it is confined."""

    name: UnitName = Field("corral-rpc", description="Unit name, without .service.")
    rpc_server: AbsolutePath = Field(
        default_factory=_rpc_server_on_path,
        description=(
            "llama.cpp's rpc-server; default: rpc-server, llama-rpc-server (nixpkgs' name) "
            "or ggml-rpc-server (its newer name) on PATH, else /usr/bin/rpc-server."
        ),
    )
    host: str = Field(
        min_length=1,
        description="The address to bind: one on the trusted network (no default; "
        "rpc-server has no authentication).",
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="The port to bind.")
    devices: list[OneLine] = Field(
        default_factory=list,
        description="Devices to offer (-d), e.g. CUDA0; empty = every device rpc-server finds.",
    )
    threads: int | None = Field(None, gt=0, description="Threads for the CPU device (-t).")
    acceleration: Acceleration = Field(
        "cpu",
        description="cpu, cuda, rocm or vulkan: decides which devices the unit may open.",
        json_schema_extra={"enum": list(ACCELERATIONS)},
    )
    user: Account | None = Field(None, description="Run as this user; unset = DynamicUser=yes.")
    extra_groups: list[Account] | None = Field(
        None, description="SupplementaryGroups=; unset = render and video for rocm and vulkan."
    )
    environment: dict[EnvName, str] = Field(
        default_factory=dict, description="Extra environment variables."
    )
    ip_address_allow: list[IpPrefix] = Field(
        default_factory=lambda: list(LOCAL_NETWORKS),
        description="Who may connect (IPAddressAllow=, plus localhost); default: the local "
        "networks; [any] opens it to every address.",
    )
    device_allow: list[OneLine] = Field(
        default_factory=list, description="More DeviceAllow= entries, e.g. `/dev/dxg rw` (WSL)."
    )

    @classmethod
    def from_raw(cls, raw: dict[str, Any], source: str = "settings") -> RpcWorkerSettings:
        """Validate the worker's settings; problems are located as ``rpc_worker.<key>``."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = [f"rpc_worker.{describe(e, cls)}" for e in exc.errors()]
            raise ConfigError(problems, source) from None

    @property
    def argv(self) -> list[str]:
        argv = [str(self.rpc_server), "-H", self.host.strip("[]"), "-p", str(self.port)]
        if self.devices:
            argv += ["-d", ",".join(self.devices)]
        if self.threads is not None:
            argv += ["-t", str(self.threads)]
        return argv


def render(worker: RpcWorkerSettings) -> dict[str, str]:
    """``{filename: text}``: the worker's one unit."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    groups = GPU_GROUPS[worker.acceleration] if worker.extra_groups is None else worker.extra_groups
    context = {
        # The shared parts (_devices.j2, _confinement.j2) read `service` as corral's do.
        "service": worker,
        "loopback": is_loopback(worker.host),
        "ip_allow": " ".join(["localhost", *worker.ip_address_allow]),
        "ip_open": "any" in worker.ip_address_allow or not worker.ip_address_allow,
        "wait_online": not is_loopback(worker.host),
        "exec_start": " ".join(quote_arg(a, program=i == 0) for i, a in enumerate(worker.argv)),
        "environment": [quote_env(k, v) for k, v in worker.environment.items()],
        "groups": list(groups),
        "gpu": worker.acceleration != "cpu",
        "private_devices": worker.acceleration == "cpu" and not worker.device_allow,
        "privileged_port": worker.port < 1024,
    }
    text = env.get_template("rpc-server.service.j2").render(context)
    return {f"{worker.name}.service": text}


@click.command("rpc-worker")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSON (or YAML): the worker's settings (host, port, devices, acceleration, ...).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write the unit file into.",
)
def command(settings_file: Path, out: Path) -> None:
    """Write the hardened unit of an RPC worker (llama.cpp's rpc-server)."""
    from corral.generator import loader

    try:
        raw = loader.read_file(settings_file)
        # Nix writes unset options as null: unset here too.
        units = render(
            RpcWorkerSettings.from_raw(
                {k: v for k, v in raw.items() if v is not None}, str(settings_file)
            )
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    for filename, text in units.items():
        (out / filename).write_text(text, encoding="utf-8")
    click.echo(f"wrote {', '.join(units)} to {out}")
