"""redis-cli --pipe mass insertion of 100,000 keys into bitcask-server, then checked.

Redis's documented bulk-loading path (https://redis.io/docs/manual/patterns/bulk-loading/):
a file of RESP commands piped through `redis-cli --pipe`, which writes them all and
then waits for one ECHO of a random marker to know every reply came back. Here the
stream is generated in the test, the summary line must say 100,000 replies and no
error, and every key is read back: DBSIZE, spot GETs with redis-cli, every key
through `redis-cli --scan`, every value through MGET in chunks (redis-py).
Skips naming the Debian package when redis-cli is missing (fails under CI=true).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import redis

from tests.protocol._redis_server import require_binary
from tests.serverproc import ServerProcess

N = 100_000
TIMEOUT = 300.0  # every subprocess and socket call is bounded
CHUNK = 1_000


def key(i: int) -> bytes:
    return b"pipe:%06d" % i


def value(i: int) -> bytes:
    # Every tenth value carries CRLF, a NUL and a high byte: bulk strings are binary-safe.
    return b"value:%d" % i if i % 10 else b"v\r\n%d\x00\xff" % i


def mass_insertion_stream(n: int) -> bytes:
    """The RESP stream a bulk load writes: one multibulk SET per key."""
    parts = []
    for i in range(n):
        k, v = key(i), value(i)
        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    return b"".join(parts)


def _cli(srv: ServerProcess, *args: str, stdin: bytes | None = None) -> bytes:
    cli = require_binary("redis-cli", "redis-tools")
    done = subprocess.run(
        [cli, "-h", srv.host, "-p", str(srv.port), *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout


@pytest.fixture
def srv(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never")


def test_redis_cli_pipe_inserts_100k_keys(srv: ServerProcess) -> None:
    out = _cli(srv, "--pipe", stdin=mass_insertion_stream(N)).decode()
    assert f"errors: 0, replies: {N}" in out, out

    assert _cli(srv, "DBSIZE") == b"%d\n" % N
    for i in (0, 1, 9, 10, 4_242, 50_000, N - 1):
        assert _cli(srv, "GET", key(i).decode()) == value(i) + b"\n"
    assert _cli(srv, "EXISTS", key(N).decode()) == b"0\n"

    scanned = _cli(srv, "--scan", "--pattern", "pipe:*").split(b"\n")
    assert scanned[-1] == b""  # one key per line
    assert sorted(scanned[:-1]) == [key(i) for i in range(N)]

    client = redis.Redis(host=srv.host, port=srv.port, socket_timeout=TIMEOUT, protocol=2)
    try:
        for start in range(0, N, CHUNK):
            ids = range(start, min(start + CHUNK, N))
            assert client.mget([key(i) for i in ids]) == [value(i) for i in ids]
    finally:
        client.close()
