"""Before authentication, requests are small on both dialects (docs/redis.md section 2,
docs/protocol.md): RESP as Redis 6.2.6+ (CVE-2021-32675): at most 10 arguments of at
most 16,384 bytes, else a protocol error and a close; binary frames at most
UNAUTH_MAX_FRAME bytes. After AUTH (or with no password set) the usual limits apply.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest

from protocol.connection import UNAUTH_MAX_FRAME
from tests.server.wire import Conn, RemoteError, request
from tests.serverproc import ServerProcess

TOKEN = "s3cret"
TIMEOUT = 10.0
BIG = b"v" * 100_000


@pytest.fixture
def guarded(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never", extra=["--auth", TOKEN])


def _exchange(srv: ServerProcess, data: bytes) -> bytes:
    """Send, then read until the server closes (bounded by TIMEOUT)."""
    with socket.create_connection((srv.host, srv.port), TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def _bulk(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"*11\r\n", b"unauthenticated multibulk length", id="count"),
        pytest.param(b"*1\r\n$16385\r\n", b"unauthenticated bulk length", id="bulk"),
        pytest.param(_bulk(b"SET", b"k", BIG), b"unauthenticated bulk length", id="whole-set"),
    ],
)
def test_resp_before_auth(guarded: ServerProcess, data: bytes, error: bytes) -> None:
    # the connection is closed after the error line, as Redis does
    assert _exchange(guarded, data) == b"-ERR Protocol error: " + error + b"\r\n"


def test_resp_within_the_limits_gets_noauth(guarded: ServerProcess) -> None:
    ten = _bulk(b"MSET", *[b"k"] * 8, b"x" * 16384) + _bulk(b"QUIT")
    assert _exchange(guarded, ten) == b"-NOAUTH Authentication required.\r\n+OK\r\n"


def test_resp_after_auth_lifts_the_limits(guarded: ServerProcess) -> None:
    with socket.create_connection((guarded.host, guarded.port), TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(_bulk(b"AUTH", TOKEN.encode()))
        assert s.recv(100) == b"+OK\r\n"
        s.sendall(_bulk(b"SET", b"k", BIG) + _bulk(b"STRLEN", b"k"))
        got = b""
        while got.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        assert got == b"+OK\r\n:100000\r\n"
        s.sendall(_bulk(b"RESET"))  # unauthenticated again: the limits are back
        assert s.recv(100) == b"+RESET\r\n"
        s.sendall(b"*11\r\n")
        assert s.recv(100) == b"-ERR Protocol error: unauthenticated multibulk length\r\n"


def test_resp_without_a_password_has_no_preauth_limits(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    got = _exchange(srv, _bulk(b"SET", b"k", BIG) + _bulk(b"STRLEN", b"k") + _bulk(b"QUIT"))
    assert got == b"+OK\r\n:100000\r\n+OK\r\n"


def test_binary_before_auth(guarded: ServerProcess) -> None:
    with Conn(guarded.port) as c:
        c.send_raw(struct.pack(">I", UNAUTH_MAX_FRAME + 1))
        _, _, error, _ = c.read_message()
        assert error[1] == "FRAME_TOO_LARGE" and str(UNAUTH_MAX_FRAME) in error[2]
        assert c.closed_by_peer()
    with Conn(guarded.port) as c:  # a put of a big value, before auth
        c.send_raw(request(1, "put", [b"k", BIG]))
        _, _, error, _ = c.read_message()
        assert error[1] == "FRAME_TOO_LARGE"
        assert c.closed_by_peer()


def test_binary_after_auth_lifts_the_limit(guarded: ServerProcess) -> None:
    with Conn(guarded.port) as c:
        with pytest.raises(RemoteError, match="AUTH_REQUIRED"):
            c.call("get", b"k")  # small requests before auth get the usual answer
        assert c.call("auth", TOKEN) is True
        c.call("put", b"k", BIG)
        assert c.call("get", b"k") == BIG
    with Conn(guarded.port) as c:
        assert c.call("hello", {"protocol": 1, "auth": TOKEN})["authenticated"] is True
        assert c.call("get", b"k") == BIG
