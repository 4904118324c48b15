"""The hardened systemd unit that runs ``corral serve``.

Owns the decisions that turn the service's settings (``unit_settings.ServiceSettings``:
identity, accelerator, extra paths) and the runtime config into unit text: which paths to
bind into the sandbox and which to keep read-only (Ollama's store, a download cache), which
groups a GPU needs, whether the IP firewall can close, how values are quoted. The unit's
wording lives in templates/corral.service.j2. It does not validate the runtime config
(``settings``), write files (``cli``) or install anything (the NixOS module does).
"""

from __future__ import annotations

import os.path
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from corral.generator import outbound
from corral.generator.problems import ConfigError
from corral.generator.settings import RESTART_KEYS, Config, is_loopback
from corral.generator.unit_settings import ONE_LINE, ServiceSettings

#: Trees the sandbox hides (ProtectHome=, PrivateTmp=): paths there must be bound in.
HIDDEN_TREES = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")

# Arguments made only of these need no quotes in ExecStart= (after % and $ are doubled).
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_@+=,./-]+")
# Inside "..." systemd reads C escapes: these keep quotes, backslashes and control characters.
_C_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_C_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t"})


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
    if not ONE_LINE.fullmatch(text):
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
    found += [p for p in (config.ollama_models, config.hf_cache) if p is not None]
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
    stores = _stores(config, writable)
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
        "read_only": [quote_path(p) for p in stores],
    }


def _stores(config: Config, writable: list[str]) -> list[str]:
    """Other tools' model folders (ollama_models, hf_cache), which the unit keeps read-only:
    no writable path may lie inside one (ReadOnlyPaths= would not cover a deeper
    ReadWritePaths=)."""
    stores = []
    for key, path in (("ollama_models", config.ollama_models), ("hf_cache", config.hf_cache)):
        if path is None or not path.is_absolute():
            continue
        store = _clean(path)
        inside = [p for p in writable if _under(p, [store])]
        if inside:
            raise ConfigError(
                [
                    f"service.read_write_paths: {inside[0]} is inside {key} ({store}), "
                    "which corral never writes; remove it from read_write_paths"
                ]
            )
        stores.append(store)
    return stores


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
