"""Running the service: logging, the uvicorn server, and the last line of defence on exit.

Owns process-level concerns of ``corral serve``: one log line per event on stderr (journald
adds the time), a loud warning when an open address has no API keys, the instance's owner
id (so a restarted corral recognises the strays of a crashed one), and killing every child
if the process leaves by any path the lifespan did not cover.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import socket
import sys
from collections.abc import Callable

import uvicorn

from corral.generator.settings import Config, is_loopback
from corral.supervisor.app import build_app
from corral.supervisor.service import Service

log = logging.getLogger("corral")


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(levelname)s %(message)s", stream=sys.stderr, force=True
    )


def owner_id(identity: str, port: int) -> str:
    """Stable across restarts of the same instance, distinct between instances."""
    return hashlib.sha256(f"{identity}:{port}".encode()).hexdigest()[:16]


def run(config: Config, reload_config: Callable[[], Config], identity: str) -> None:
    """Serve until SIGINT/SIGTERM; every child is stopped before this returns."""
    service = Service(config, reload_config, owner_id(identity, config.port))
    if not is_loopback(config.host) and not service.keys.required:
        log.warning(
            "LISTENING ON %s:%d WITH NO API KEYS: anyone who can reach this address can use "
            "your models. Set api_keys or api_key_file.",
            config.host,
            config.port,
        )
    # Bind before anything else: if another corral holds the port, fail now, before the
    # start-up would reap that corral's children as if they were strays.
    sock = listen_socket(config.host, config.port)
    atexit.register(service.pool.kill_all_now)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(service),
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            # Say nothing about what serves; a relayed answer keeps the child's Server header.
            server_header=False,
        )
    )
    log.info(
        "corral listening on http://%s:%d with %d model(s)",
        config.host,
        config.port,
        len(config.models),
    )
    server.run(sockets=[sock])


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a clear exit when the address is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d: %s (is another corral or ollama running there?)",
            host,
            port,
            exc.strerror or exc,
        )
        sys.exit(1)
    return sock
