"""The idle-exit rule (``ttl``), pure, and the sockets systemd passes (``http.listen``)."""

from __future__ import annotations

import math
import os
import socket

import pytest

from corral.supervisor.http import listen
from corral.supervisor.runtime.ttl import (
    ACTIVATED_IDLE_EXIT,
    NEVER,
    Activity,
    Ttl,
    exit_deadline,
    exits,
    idle_exit_after,
)


@pytest.mark.parametrize(
    ("setting", "activated", "after"),
    [
        (None, False, NEVER),  # nothing would start it again
        (None, True, ACTIVATED_IDLE_EXIT),
        (0, True, NEVER),  # 0 means never, as for a ttl
        (0, False, NEVER),
        (30, False, 30.0),  # set: also without systemd (a supervisor of one's own restarts it)
        (2.5, True, 2.5),
    ],
)
def test_idle_exit_is_off_unless_set_or_socket_activated(
    setting: float | None, activated: bool, after: Ttl
) -> None:
    assert idle_exit_after(setting, activated) == after


@pytest.mark.parametrize(
    ("children", "connections", "after", "now", "leaves"),
    [
        (0, 0, 10.0, 109.9, False),  # idle, not yet long enough
        (0, 0, 10.0, 110.0, True),  # the boundary: exactly idle_exit since quiet
        (0, 0, 10.0, 500.0, True),
        (1, 0, 10.0, 500.0, False),  # a child (loaded, loading, stopping) keeps it up
        (0, 1, 10.0, 500.0, False),  # a connection: a request in flight is never cut
        (1, 3, 10.0, 500.0, False),
        (0, 0, NEVER, 1e12, False),
    ],
)
def test_corral_exits_only_once_nothing_ran_for_idle_exit(
    children: int, connections: int, after: Ttl, now: float, leaves: bool
) -> None:
    activity = Activity(children=children, connections=connections, quiet_since=100.0)
    assert exits(activity, after, now) is leaves
    if children or connections or after is NEVER:
        assert math.isinf(exit_deadline(activity, after))


def test_passed_sockets_count_only_for_this_process_and_the_variables_go() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert listen.inherited(env) == []
    assert env == {}  # a child never sees them


def test_a_bad_listen_fds_names_the_value() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"}
    with pytest.raises(listen.ListenError, match=r"LISTEN_FDS must be a positive number.*'two'"):
        listen.inherited(env)


@pytest.mark.parametrize(
    ("kind", "listening", "problem"),
    [
        (socket.SOCK_DGRAM, False, "is not a stream socket; use ListenStream="),
        (socket.SOCK_STREAM, False, "is not listening"),
    ],
)
def test_a_passed_socket_corral_cannot_serve_is_named(
    kind: socket.SocketKind, listening: bool, problem: str
) -> None:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(listen.ListenError, match=f"descriptor {sock.fileno()} {problem}"):
            listen._checked(sock.fileno())
        sock.getsockname()  # still open: the descriptor was not corral's to close


def test_several_sockets_are_loopback_only_when_every_one_is() -> None:
    with socket.socket() as four, socket.socket(socket.AF_INET6) as six:
        four.bind(("127.0.0.1", 0))
        six.bind(("::", 0))
        assert listen.address([four]) == ("127.0.0.1", four.getsockname()[1])
        assert listen.address([four, six]) == ("::", six.getsockname()[1])
        assert listen.describe([four, six]).endswith(f"[::]:{six.getsockname()[1]}")
