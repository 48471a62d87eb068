"""The pre-AUTH deadline (--auth-timeout), over real sockets.

The report: with --auth, two clients without the token that sent a PING every 0.3 s
held both slots of --max-connections 2 past --idle-timeout (2 s) for as long as they
liked; a client with the token was refused (`-ERR max number of clients reached`)
after 8 s as at once. Now a binary or Redis connection that has not authenticated
--auth-timeout seconds after it was admitted is closed.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config import ConfigError, ServerConfig
from tests.server.wire import Conn, Inline
from tests.serverproc import ServerProcess

TOKEN = "s3cret"
DEADLINE = 0.5  # --auth-timeout of these servers, seconds
WAIT = 30.0  # bound of every wait here


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        data=tmp_path / "data",
        extra=[
            "--auth", TOKEN,
            "--auth-timeout", str(DEADLINE),
            "--max-connections", "4",
            "--idle-timeout", "0",
        ],
    ).start()  # fmt: skip
    yield srv
    assert srv.stop() == 0, srv.log()


def _connections(srv: ServerProcess) -> int:
    """The bitcask_connections gauge less the HTTP connection that reads it."""
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=WAIT) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("bitcask_connections "):
            return int(float(line.split()[1])) - 1
    raise AssertionError(data[:300])


def _wait_for_connections(srv: ServerProcess, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while _connections(srv) != n:
        assert time.monotonic() < deadline, f"{_connections(srv)} connections, not {n}"
        time.sleep(0.05)


def _pinged_until_closed(c: Conn) -> bool:
    """PING (open before AUTH) every 0.1 s until the server closes; False at WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            assert c.call("ping") is not None
        except (ConnectionError, OSError):
            return True
        time.sleep(0.1)
    return False


def test_an_unauthenticated_connection_is_closed_at_the_deadline(
    guarded: ServerProcess,
) -> None:
    _wait_for_connections(guarded, 0)  # the start-up's port checks are gone
    with (
        Conn(guarded.port) as pinging,
        Conn(guarded.port) as silent,
        Inline(guarded.port) as redis,
        Conn(guarded.port) as member,
    ):
        assert member.call("auth", TOKEN) is True
        member.call("put", b"k", b"before")
        redis.send(b"PING\r\n")
        assert str(redis.reply()).startswith("NOAUTH")
        # every slot is held: a token holder is refused now
        with (
            Conn(guarded.port) as late,
            pytest.raises(ConnectionError, match="max number of clients reached"),
        ):
            late.call("auth", TOKEN)
        assert _pinged_until_closed(pinging), "a pinging client without the token kept its slot"
        assert silent.closed_by_peer(WAIT)
        with pytest.raises((ConnectionError, OSError)):
            redis.send(b"PING\r\n")
            redis.reply()
        _wait_for_connections(guarded, 1)
        # the connection that authenticated in time is kept, past the deadline
        time.sleep(DEADLINE * 2)
        assert member.call("get", b"k") == b"before"
        member.call("put", b"k", b"after")
        # and a token holder gets a slot again, authenticated in time: kept too
        with Conn(guarded.port) as late:
            assert late.call("hello", {"auth": TOKEN})["authenticated"] is True
            time.sleep(DEADLINE * 2)
            assert late.call("get", b"k") == b"after"
            assert late.call("get", b"missing") is None
        with Inline(guarded.port) as redis_member:
            redis_member.send(f"AUTH {TOKEN}\r\n".encode())
            assert redis_member.reply() == "OK"
            time.sleep(DEADLINE * 2)
            redis_member.send(b"GET k\r\n")
            assert redis_member.reply() == b"after"
        assert member.call("get", b"k") == b"after"
    _wait_for_connections(guarded, 0)
    assert "Traceback" not in guarded.log()


def test_without_a_token_there_is_no_deadline(tmp_path: Path) -> None:
    srv = ServerProcess(
        data=tmp_path / "data", extra=["--auth-timeout", str(DEADLINE), "--idle-timeout", "0"]
    ).start()
    try:
        with Conn(srv.port) as c:
            c.call("put", b"k", b"v")
            time.sleep(DEADLINE * 3)
            assert c.call("get", b"k") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()


def test_auth_timeout_0_keeps_the_old_rule(tmp_path: Path) -> None:
    srv = ServerProcess(
        data=tmp_path / "data",
        extra=["--auth", TOKEN, "--auth-timeout", "0", "--idle-timeout", "0"],
    ).start()
    try:
        with Conn(srv.port) as c:
            assert c.call("ping") is not None
            time.sleep(1.5)
            assert c.call("ping") is not None
            assert c.call("auth", TOKEN) is True
            c.call("put", b"k", b"v")
            assert c.call("get", b"k") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()


def test_auth_timeout_values() -> None:
    assert ServerConfig().auth_timeout == 60.0
    env = {"BITCASK_AUTH_TIMEOUT": "2.5"}
    assert ServerConfig.from_args([], env=env).auth_timeout == 2.5
    assert ServerConfig.from_args(["--auth-timeout", "0"], env=env).auth_timeout == 0.0
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="auth-timeout must be a finite number >= 0"):
            ServerConfig(auth_timeout=bad)
    with pytest.raises(ConfigError, match="BITCASK_AUTH_TIMEOUT='soon': must be a number"):
        ServerConfig.from_args([], env={"BITCASK_AUTH_TIMEOUT": "soon"})
