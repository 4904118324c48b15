"""Running the service: logging, the uvicorn server, and the last line of defence on exit.

Owns process-level concerns of ``corral serve``: one log line per event on stderr (journald
adds the time), a loud warning when an open address has no API keys, the instance's owner
id (so a restarted corral recognises the strays of a crashed one), the event loop (uvloop
where installed; env CORRAL_LOOP), the listening sockets (its own, or systemd's: ``listen``),
the idle exit's effect (stop listening, stop the server: ``idle_exit``), and killing every
child if the process leaves by any path the lifespan did not cover.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Callable

import uvicorn

from corral.generator import idle_exit
from corral.generator.settings import Config, is_loopback
from corral.supervisor.app import build_app
from corral.supervisor.http import listen
from corral.supervisor.http.connections import guarded
from corral.supervisor.idle_exit import IdleExit
from corral.supervisor.runtime import ttl
from corral.supervisor.service import Service

log = logging.getLogger("corral")


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(levelname)s %(message)s", stream=sys.stderr, force=True
    )
    logging.getLogger("asyncio").addFilter(OutOfFiles())


class OutOfFiles(logging.Filter):
    """asyncio logs a traceback for every accept() that fails for lack of file descriptors,
    and retries each second: 223k tracebacks (92 MB) in one measured run. Keep one line a
    minute, saying how many were dropped."""

    EVERY_S = 60.0
    MESSAGE = "socket.accept() out of system resource"

    def __init__(self) -> None:
        super().__init__()
        self.last = -self.EVERY_S
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.MESSAGE):
            return True
        now = time.monotonic()
        if now - self.last < self.EVERY_S:
            self.dropped += 1
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = f"cannot accept connections: {error or 'out of resources'} (max_connections "
        record.msg += f"is larger than the file descriptor limit?); {self.dropped} more not logged"
        record.args, record.exc_info, record.exc_text = (), None, None
        self.last, self.dropped = now, 0
        return True


def raise_file_limit(config: Config) -> None:
    """Raise the soft RLIMIT_NOFILE (often 1,024) to what max_connections needs, as far as
    the hard limit allows: each proxied request holds two descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.open_files
    if soft >= wanted:
        return
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if limit < wanted:
        log.warning(
            "max_connections %d needs %d file descriptors, but the limit is %d: "
            "lower max_connections or raise LimitNOFILE",
            config.max_connections,
            wanted,
            limit,
        )


#: glibc's mallopt parameter, and the size from which a block is mmapped (glibc's default).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def give_back_large_blocks() -> None:
    """Have glibc return large freed blocks (request bodies) to the system at once.

    glibc mmaps a block over its threshold, but raises the threshold to the size of each such
    block freed (up to 32 MiB): after the first 8 MB body the next ones come from the heap,
    where memory freed below a block still in use stays in the process. Measured: after a
    burst of 80 bodies of 8 MB, 520 MB stayed of a 64 MB corral; 70 MB with the threshold
    fixed, which also turns the raising off. Where malloc is not glibc's, nothing is set.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def owner_id(identity: str, port: int) -> str:
    """Stable across restarts of the same instance, distinct between instances."""
    return hashlib.sha256(f"{identity}:{port}".encode()).hexdigest()[:16]


def run(
    config: Config,
    reload_config: Callable[[], Config],
    identity: str,
    inherited: list[socket.socket] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, or until idle for ``idle_exit``; every child is stopped
    before this returns. ``inherited``: the listening sockets systemd passed (``listen``);
    ``config`` then carries their address."""
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
    sockets = inherited or [listen.bind(config.host, config.port)]
    raise_file_limit(config)
    give_back_large_blocks()
    atexit.register(service.pool.kill_all_now)
    protocol = guarded(lambda: service.config)

    def stop() -> None:
        # Stop accepting at once, in the same step as the decision: a connection that
        # comes later waits in systemd's socket, which starts corral again for it.
        for listening in server.servers:
            listening.close()
        server.should_exit = True

    def after() -> ttl.Ttl:
        return ttl.idle_exit_after(service.config.idle_exit, activated=bool(inherited))

    idle = IdleExit(after, service.pool, protocol.shared, stop)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(service, idle),
            http=protocol,
            loop=event_loop(),
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
        "corral listening on http://%s%s with %d model(s)%s",
        listen.describe(sockets),
        " (sockets from systemd)" if inherited else "",
        len(config.models),
        "" if after() is ttl.NEVER else f"; exits after {after():g} s idle (idle_exit)",
    )
    if after() is not ttl.NEVER:
        for note in idle_exit.notes(config):
            log.warning("%s", note)
    server.run(sockets=sockets)


#: uvicorn's loop choices; "auto" is uvloop where it is installed (measured: see the bench).
LOOPS = ("auto", "uvloop", "asyncio")


def event_loop() -> str:
    """The event loop: env CORRAL_LOOP (auto, uvloop, asyncio), else auto."""
    chosen = os.environ.get("CORRAL_LOOP", "auto")
    if chosen not in LOOPS:
        log.error("CORRAL_LOOP must be one of %s, got %r", ", ".join(LOOPS), chosen)
        sys.exit(2)
    return chosen
