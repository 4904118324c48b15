"""Where corral listens: sockets systemd passed in (socket activation), or one it binds.

Owns systemd's ``sd_listen_fds`` protocol (``LISTEN_PID``, ``LISTEN_FDS``, descriptors from
3 on): the passed sockets are checked (listening TCP streams, IPv4 or IPv6), marked
close-on-exec and the variables removed, so that no llama-server inherits the listening
socket or believes it was activated. Also the one address that the Host check, the owner id
and the warnings read when several sockets came, and binding host:port when none came. It
serves nothing: uvicorn does, with ``connections``' limits, on whichever sockets this gives.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import sys
from collections.abc import MutableMapping, Sequence

from corral.generator.settings import is_loopback

log = logging.getLogger("corral")

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
FIRST_FD = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ListenError(Exception):
    """The sockets systemd passed cannot be served: the message says which and why."""


def inherited(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets passed to this process (empty: none, bind your own).

    As ``sd_listen_fds(unset_environment=1)``: the variables count only when ``LISTEN_PID``
    is this process (a child that inherited them was not activated), and they are removed
    either way, so corral's children never see them.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in _VARIABLES:
        env.pop(name, None)
    if pid is None or count is None or pid != str(os.getpid()):
        return []
    if not count.isdigit() or int(count) == 0:
        raise ListenError(f"LISTEN_FDS must be a positive number of sockets, got {count!r}")
    return [_checked(fd) for fd in range(FIRST_FD, FIRST_FD + int(count))]


def _checked(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"LISTEN_FDS: descriptor {fd} is not a socket ({exc.strerror})") from None
    # Close-on-exec: a llama-server holding the listening socket would keep the port
    # "open" after corral exits, and systemd would never start corral again.
    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
    problem = None
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        problem = f"is a {sock.family.name} socket; corral serves TCP (IPv4 or IPv6)"
    elif sock.type != socket.SOCK_STREAM:
        problem = "is not a stream socket; use ListenStream=, not ListenDatagram="
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "is not listening; corral takes listening sockets (Accept=no)"
    if problem is not None:
        sock.detach()  # not ours to close
        raise ListenError(f"LISTEN_FDS: descriptor {fd} {problem}")
    sock.setblocking(False)
    return sock


def address(sockets: Sequence[socket.socket]) -> tuple[str, int]:
    """The host and port that stand for ``sockets``: loopback only when every one is, so
    the DNS-rebinding Host check and the no-API-key warning stay as strict as a bind."""
    named = [_host_port(s) for s in sockets]
    wide = [hp for hp in named if not is_loopback(hp[0])]
    return (wide or named)[0]


def _host_port(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


def describe(sockets: Sequence[socket.socket]) -> str:
    """``127.0.0.1:11434, [::1]:11434``: for the log."""
    parts = []
    for sock in sockets:
        host, port = _host_port(sock)
        parts.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return ", ".join(parts)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a clear exit when the address is taken."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            # Ollama and corral both default to 11434: the likely case deserves its own words.
            log.error(
                "cannot listen on %s:%d: the port is taken; another program listens there "
                "(Ollama and corral both use 11434: `ss -ltnp 'sport = :%d'` shows which). "
                "Stop it, or choose another port with --port or env PORT",
                host,
                port,
                port,
            )
        else:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        sys.exit(1)
    return sock
