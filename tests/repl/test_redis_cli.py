"""`bitcask --url redis://...`: one-shot commands against real Redis-protocol endpoints.

The same commands, output and exit codes as over the binary protocol, against (a) a
bitcask-server's RESP dialect, (b) a real redis-server, (c) twemproxy in front of two
bitcask-servers; binary-only commands are refused in one line with exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.repl.conftest import TIMEOUT, Result
from tests.repl.redisprocs import nutcracker, redis_server
from tests.serverproc import ServerProcess

KINDS = ("bitcask", "redis-server", "nutcracker")


@dataclass
class Endpoint:
    kind: str
    url: str


@pytest.fixture(params=KINDS)
def endpoint(
    request: pytest.FixtureRequest,
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
) -> Iterator[Endpoint]:
    if request.param == "bitcask":
        yield Endpoint("bitcask", f"redis://127.0.0.1:{server_factory().port}")
    elif request.param == "redis-server":
        with redis_server(tmp_path) as port:
            yield Endpoint("redis-server", f"redis://127.0.0.1:{port}")
    else:
        backends = [server_factory().port, server_factory().port]
        with nutcracker(tmp_path, backends) as port:
            yield Endpoint("nutcracker", f"redis://127.0.0.1:{port}")


Cli = Callable[..., Result]


@pytest.fixture
def cli(home_env: dict[str, str], tmp_path: Path) -> Cli:
    def run(*args: str, input: bytes | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "repl.cli", *args],
            input=input,
            capture_output=True,
            env=home_env,
            cwd=tmp_path,
            timeout=TIMEOUT,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))

    return run


def test_single_key_commands(endpoint: Endpoint, cli: Cli) -> None:
    def ok(*args: str, input: bytes | None = None) -> bytes:
        r = cli("--url", endpoint.url, *args, input=input)
        assert r.code == 0, (args, r.err)
        return r.out

    assert ok("put", "user:1", "Ada Lovelace") == b"OK\n"
    assert ok("get", "user:1") == b"Ada Lovelace\n"
    r = cli("--url", endpoint.url, "get", "nope")
    assert (r.code, r.out, r.err) == (1, b"\n", "")
    assert cli("--url", endpoint.url, "--no-raw", "get", "nope").out == b"(nil)\n"
    assert ok("put", "photo", "-", input=b"\x00\xff\r\n") == b"OK\n"
    assert ok("get", "photo") == b"\x00\xff\r\n\n"
    assert ok("put", "session", "tok", "TTL", "30") == b"OK\n"
    assert 0 < float(ok("ttl", "session")) <= 30  # not 28 <: CLI start-ups under load
    assert ok("ttl", "user:1") == b"-1\n"
    assert cli("--url", endpoint.url, "ttl", "nope").code == 1
    assert ok("--no-raw", "ttl", "user:1") == b"(no ttl)\n"
    assert ok("incr", "visits") == b"1\n"
    assert ok("incr", "visits", "BY", "-5") == b"-4\n"
    assert ok("incrfloat", "price", "0.25") == b"0.25\n"
    assert ok("append", "log", "ab") == b"2\n"
    assert ok("set", "lock", "me", "NX", "TTL", "30") == b"OK\n"
    assert cli("--url", endpoint.url, "set", "lock", "you", "NX").code == 1
    assert ok("set", "lock", "you", "XX", "GET") == b"me\n"
    assert ok("exists", "lock") == b"1\n"
    assert ok("getdel", "lock") == b"you\n"
    assert cli("--url", endpoint.url, "exists", "lock").code == 1
    assert ok("mput", "a", "1", "b", "2") == b"OK\n"
    assert ok("mget", "a", "nope", "b") == b"1\n\n2\n"
    assert ok("delete", "a") == b"1\n"
    assert cli("--url", endpoint.url, "delete", "a").code == 1
    assert ok("ping") == b"PONG\n"
    assert ok("--no-raw", "expire", "b", "100") == b"(true)\n"
    assert ok("persist", "b") == b"1\n"


def test_a_server_error_keeps_its_type(endpoint: Endpoint, cli: Cli) -> None:
    cli("--url", endpoint.url, "put", "word", "abc")
    r = cli("--url", endpoint.url, "incr", "word")
    assert r.code == 2
    assert r.err == "(error) NOT_A_NUMBER value is not an integer or out of range\n"


@pytest.mark.parametrize(
    ("args", "what"),
    [
        pytest.param(("merge",), "merge (compacting data files)", id="merge"),
        pytest.param(("sync",), "sync (fsync on demand)", id="sync"),
        pytest.param(("backup", "bk"), "backup (snapshots)", id="backup"),
    ],
)
def test_binary_only_commands_are_refused_in_one_line(
    endpoint: Endpoint, cli: Cli, args: tuple[str, ...], what: str
) -> None:
    r = cli("--url", endpoint.url, *args)
    assert r.code == 2
    assert r.out == b""
    assert r.err == (
        f"(error) {what} is not part of the Redis protocol: {endpoint.url} cannot run it "
        "(a bitcask-server's binary port, bitcask://HOST:PORT, can)\n"
    )


def test_whole_keyspace_commands(endpoint: Endpoint, cli: Cli) -> None:
    """keys, scan, stats and clear: served by one server; twemproxy does not proxy them."""
    cli("--url", endpoint.url, "mput", "k:2", "x", "k:1", "y", "other", "z")
    keys = cli("--url", endpoint.url, "keys", "k:")
    stats = cli("--url", endpoint.url, "stats")
    clear = cli("--url", endpoint.url, "clear", "all")
    if endpoint.kind == "nutcracker":
        for r, command in ((keys, "SCAN"), (stats, "INFO"), (clear, "MULTI")):
            assert r.code == 2 and r.out == b""
            assert r.err.startswith(
                f"(error) 127.0.0.1:{endpoint.url.rsplit(':', 1)[1]} closed the connection "
                f"instead of answering {command} (a proxy such as twemproxy"
            ), r.err
            assert r.err.count("\n") == 1
        return
    assert (keys.code, keys.out) == (0, b"k:1\nk:2\n")
    assert stats.code == 0 and json.loads(stats.out)["keys"] == 3
    assert (clear.code, clear.out) == (0, b"3\n")
    assert cli("--url", endpoint.url, "keys").out == b""


def test_scan_pages_with_the_cursor(endpoint: Endpoint, cli: Cli) -> None:
    if endpoint.kind == "nutcracker":  # twemproxy does not proxy SCAN: said in one line
        r = cli("--url", endpoint.url, "scan", "p:", "", "5")
        assert r.code == 2 and r.out == b"" and r.err.count("\n") == 1, r.err
        assert "instead of answering SCAN" in r.err, r.err
        return
    pairs = [w for i in range(30) for w in (f"p:{i:02d}", "v")]
    cli("--url", endpoint.url, "mput", *pairs)
    seen: set[bytes] = set()
    cursor: str | None = None
    for _ in range(100):  # bounded: 30 keys in pages of ~5
        r = cli("--url", endpoint.url, "scan", "p:", cursor or "", "5")
        assert r.code == 0, r.err
        first, *keys = r.out.split(b"\n")[:-1]
        seen.update(keys)
        if not first:
            break
        cursor = first.decode()
    assert seen == {f"p:{i:02d}".encode() for i in range(30)}


def test_password_in_the_url(tmp_path: Path, cli: Cli) -> None:
    with redis_server(tmp_path, password="s3cret") as port:
        r = cli("--url", f"redis://:s3cret@127.0.0.1:{port}", "put", "k", "v")
        assert (r.code, r.out) == (0, b"OK\n"), r.err
        r = cli("--url", f"redis://default:s3cret@127.0.0.1:{port}/0", "get", "k")
        assert (r.code, r.out) == (0, b"v\n"), r.err
        r = cli("--url", f"redis://127.0.0.1:{port}", "get", "k")
        assert r.code == 2
        assert r.err.startswith(f"(error) AUTH_REQUIRED 127.0.0.1:{port} requires a token")
        r = cli("--url", f"redis://:wrong@127.0.0.1:{port}", "get", "k")
        assert r.code == 2
        assert r.err.startswith(f"(error) AUTH_FAILED 127.0.0.1:{port} refused the token")


def test_bitcask_auth_token_as_the_password(
    server_factory: Callable[..., ServerProcess], cli: Cli
) -> None:
    srv = server_factory(extra=["--auth", "tok"])
    r = cli("--url", f"redis://:tok@127.0.0.1:{srv.port}", "put", "k", "v")
    assert (r.code, r.out) == (0, b"OK\n"), r.err
    r = cli("--redis", "--port", str(srv.port), "--auth", "tok", "get", "k")
    assert (r.code, r.out) == (0, b"v\n"), r.err
    r = cli("--redis", "--port", str(srv.port), "get", "k")
    assert r.code == 2 and "AUTH_REQUIRED" in r.err


def test_rediss_is_refused(cli: Cli) -> None:
    r = cli("--url", "rediss://127.0.0.1:6380", "get", "k")
    assert r.code == 2
    assert r.err.startswith("(error) TLS is not supported: 'rediss://127.0.0.1:6380'")


def test_no_endpoint_is_one_line(cli: Cli) -> None:
    from tests.serverproc import free_port

    port = free_port()
    r = cli("--url", f"redis://127.0.0.1:{port}", "get", "k")
    assert r.code == 2
    assert r.err == (
        f"(error) cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)\n"
    )
