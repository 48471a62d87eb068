"""Redis's own tools against bitcask-server: redis-cli (one-shot, --scan, --pipe) and
redis-benchmark. Each skips naming its Debian package when the binary is missing
(fails under CI=true, which installs them)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.protocol._redis_server import require_binary
from tests.serverproc import ServerProcess

TIMEOUT = 120.0


@pytest.fixture
def srv(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never")


def _cli(srv: ServerProcess, *args: str, stdin: bytes | None = None) -> str:
    cli = require_binary("redis-cli", "redis-tools")
    done = subprocess.run(
        [cli, "-h", srv.host, "-p", str(srv.port), *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout.decode()


def test_redis_cli_one_shot(srv: ServerProcess) -> None:
    assert _cli(srv, "PING") == "PONG\n"
    assert _cli(srv, "SET", "greeting", "hello world") == "OK\n"
    assert _cli(srv, "GET", "greeting") == "hello world\n"
    assert _cli(srv, "INCRBY", "n", "5") == "5\n"
    assert _cli(srv, "GET", "missing") == "\n"
    assert "unknown command" in _cli(srv, "NOSUCH")


def test_redis_cli_reads_commands_from_stdin(srv: ServerProcess) -> None:
    # Not a tty: redis-cli first fetches COMMAND DOCS (its hints), then runs each line.
    out = _cli(srv, stdin=b'SET "a b" "c d"\nGET "a b"\nMULTI\nINCR n\nINCR n\nEXEC\n')
    assert out.splitlines() == ["OK", "c d", "OK", "QUEUED", "QUEUED", "1", "2"]


def test_redis_cli_pipe_mass_insertion_and_scan(srv: ServerProcess, tmp_path: Path) -> None:
    n = 10_000
    proto = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v)
        for k, v in ((b"key:%d" % i, b"value:%d" % i) for i in range(n))
    )
    out = _cli(srv, "--pipe", stdin=proto)
    assert f"errors: 0, replies: {n}" in out
    assert _cli(srv, "DBSIZE") == f"{n}\n"
    assert _cli(srv, "GET", "key:9999") == "value:9999\n"
    keys = _cli(srv, "--scan", "--pattern", "key:99*").split()
    assert sorted(keys) == sorted(
        ["key:99"]
        + [f"key:99{i}" for i in range(10)]
        + [f"key:99{i}{j}" for i in range(10) for j in range(10)]
    )


def test_redis_benchmark_completes(srv: ServerProcess) -> None:
    bench = require_binary("redis-benchmark", "redis-tools")
    done = subprocess.run(
        [bench, "-h", srv.host, "-p", str(srv.port), "-t", "set,get", "-n", "2000", "-q"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    out = done.stdout.decode()
    assert "SET:" in out and "GET:" in out
    assert "requests per second" in out
