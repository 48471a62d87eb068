"""The largest keys and values, end to end: every way in and out takes a value at the
limit whole and refuses one byte more with the documented error.

One real server for the module with small limits (keys of 1 KiB, values of 256 KiB,
data files of 64 KiB so a value outgrows a file) stands for the defaults: the rules
are the same numbers scaled down, and the matrix stays within the suite's budget. One
test runs a value past the default reply frame (66 MiB) on a server configured for it.
The engine's own paths (write_batch, merge, hint files, backup, check) run embedded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import bitcask
import client
from protocol import DEFAULT_MAX_FRAME, BinaryDialect, LocalProtocolError, Request, reply_limit
from server._dispatch import Dispatcher
from server._outcome import Read
from server.config import ConfigError, ServerConfig
from tests.protocol._redis_server import require_binary
from tests.server import wire
from tests.serverproc import ServerProcess

KiB = 1024
MiB = 1024 * KiB
MAX_KEY = 1 * KiB
MAX_VALUE = 256 * KiB
FILE_SIZE = 64 * KiB
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("limits") / "data"
    data.mkdir()
    proc = ServerProcess(
        data=data,
        sync="never",
        extra=[
            "--max-key-size", str(MAX_KEY),
            "--max-value-size", str(MAX_VALUE),
            "--max-file-size", str(FILE_SIZE),
            "--http-keepalive", "0",
            "--http-max-header-bytes", str(128 * KiB),
        ],
    )  # fmt: skip
    proc.start()
    yield proc
    proc.kill()


def value(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256) + b"\x5a" * (n % 256)


def rss_anon(srv: ServerProcess) -> int:
    """The server's anonymous resident memory (heap, not the mapped data files)."""
    assert srv.proc is not None
    with open(f"/proc/{srv.proc.pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/<pid>/status")


def cli(srv: ServerProcess, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "repl.cli", "--port", str(srv.port), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT, check=False)


def test_binary_client_takes_the_limits_whole_and_refuses_one_byte_more(
    srv: ServerProcess,
) -> None:
    big, key = value(MAX_VALUE), b"k" * MAX_KEY

    async def main() -> None:
        async with client.connect("127.0.0.1", srv.port, timeout=TIMEOUT) as db:
            assert db.limits.max_value_size == MAX_VALUE
            assert db.limits.max_key_size == MAX_KEY
            await db.put(b"bin:max", big)
            await db.put(key, b"")
            await db.mput([(b"bin:m1", big), (b"bin:m2", value(MAX_VALUE, 1))])
            assert await db.get(b"bin:max") == big
            assert await db.get(key) == b""
            assert await db.mget([b"bin:m1", b"bin:m2", key]) == [big, value(MAX_VALUE, 1), b""]
            assert (await db.scan_page(b"kk", count=10))[1] == [key]
            with pytest.raises(client.ValueTooLargeError):
                await db.put(b"bin:over", big + b"x")
            with pytest.raises(client.KeyTooLargeError):
                await db.put(key + b"k", b"v")
            with pytest.raises(client.ValueTooLargeError):
                await db.append(b"bin:max", b"x")
            assert await db.get(b"bin:max") == big

    asyncio.run(main())
    # The server's own check, without the client's local one in front of it.
    with wire.Conn(srv.port) as conn:
        with pytest.raises(wire.RemoteError) as over:
            conn.call("put", b"bin:over", big + b"x")
        assert over.value.name == "VALUE_TOO_LARGE"
        with pytest.raises(wire.RemoteError) as long_key:
            conn.call("put", key + b"k", b"v")
        assert long_key.value.name == "KEY_TOO_LARGE"
        assert conn.call("get", b"bin:max") == big  # the connection goes on


def test_redis_py_takes_the_limits_whole_and_refuses_one_byte_more(srv: ServerProcess) -> None:
    big, key = value(MAX_VALUE, 2), b"r" * MAX_KEY
    r = redis.Redis(port=srv.port, socket_timeout=TIMEOUT)
    try:
        assert r.set(b"resp:max", big)
        assert r.set(key, b"")
        assert r.get(b"resp:max") == big
        assert r.get(key) == b""
        assert r.strlen(b"resp:max") == MAX_VALUE
        assert r.mget([b"resp:max", key]) == [big, b""]
        for call in (
            lambda: r.set(b"resp:over", big + b"x"),
            lambda: r.append(b"resp:max", b"x"),
            lambda: r.mset({b"resp:ok": b"v", b"resp:over": big + b"x"}),
        ):
            with pytest.raises(redis.ResponseError, match="exceeds maximum allowed size"):
                call()
        with pytest.raises(redis.ResponseError, match="over max_key_size"):
            r.set(key + b"r", b"v")
        assert r.exists(b"resp:ok", b"resp:over") == 0  # MSET refused whole
        assert r.get(b"resp:max") == big
    finally:
        r.close()


def test_redis_cli_x_reads_a_max_value_from_stdin(srv: ServerProcess, tmp_path: Path) -> None:
    binary = require_binary("redis-cli", "redis-tools")
    big = value(MAX_VALUE, 3)

    def run(*args: str, stdin: bytes = b"") -> bytes:
        argv = [binary, "-p", str(srv.port), *args]
        return subprocess.run(
            argv, input=stdin, capture_output=True, timeout=TIMEOUT, check=False
        ).stdout

    assert run("-x", "SET", "cli:max", stdin=big) == b"OK\n"
    assert run("GET", "cli:max") == big + b"\n"
    assert b"exceeds maximum allowed size" in run("-x", "SET", "cli:over", stdin=big + b"x")


def test_http_takes_the_limits_whole_and_refuses_one_byte_more(
    srv: ServerProcess, tmp_path: Path
) -> None:
    curl = require_binary("curl", "curl")
    big = value(MAX_VALUE, 4)
    body = tmp_path / "body"
    body.write_bytes(big)
    url = f"http://127.0.0.1:{srv.http_port}/kv/"

    def run(*args: str) -> bytes:
        out = subprocess.run([curl, "-s", *args], capture_output=True, timeout=TIMEOUT, check=True)
        return out.stdout

    assert (
        run("-X", "PUT", "--data-binary", f"@{body}", "-w", "%{http_code}", url + "http:max")
        == b"204"
    )
    assert run(url + "http:max") == big
    assert run("-X", "PUT", "--data-binary", "", "-w", "%{http_code}", url + "http:zero") == b"204"
    assert run("-w", "%{http_code} %{size_download}", url + "http:zero") == b"200 0"
    body.write_bytes(big + b"x")
    over = run("-X", "PUT", "--data-binary", f"@{body}", "-w", "\n%{http_code}", url + "http:over")
    assert over.endswith(b"\n413") and b'"VALUE_TOO_LARGE"' in over
    over = run("-X", "PUT", "--data-binary", "v", "-w", "\n%{http_code}", url + "k" * (MAX_KEY + 1))
    assert over.endswith(b"\n413") and b'"KEY_TOO_LARGE"' in over
    assert run("-w", "%{http_code}", url + "http:over").endswith(b"404")
    # A URL past 65,535 bytes: httptools cannot parse it whatever the header limit
    # allows; it was a 400 "malformed request URL", it is a 414 as a long URL is.
    over = run("-w", "\n%{http_code}", url + "k" * (65536 - len("/kv/")))
    assert over.endswith(b"\n414") and b"request URL too long" in over


def test_bitcask_cli_put_from_stdin_and_get_to_a_pipe(srv: ServerProcess) -> None:
    big = value(MAX_VALUE, 5)
    put = cli(srv, "put", "shell:max", "-", stdin=big)
    assert (put.returncode, put.stdout) == (0, b"OK\n"), put.stderr
    got = cli(srv, "get", "shell:max")
    assert got.returncode == 0 and got.stdout == big + b"\n"  # the value, then a newline
    over = cli(srv, "put", "shell:over", "-", stdin=big + b"x")
    assert over.returncode != 0
    assert b"VALUE_TOO_LARGE" in over.stdout + over.stderr


def test_mget_past_the_reply_frame_is_refused_before_any_value_is_read(
    srv: ServerProcess,
) -> None:
    # Named 300 times, one 256 KiB value is a 75 MiB reply: over the 65 MiB reply frame.
    # The refusal used to come from the reply's encoder, after every copy was read
    # (about three times the reply in server memory: 2.2 GB for a 1 MiB key x 300).
    big = value(MAX_VALUE, 6)
    with wire.Conn(srv.port) as conn:
        conn.call("put", b"mget:big", big)
        before = srv.peak_rss_bytes()
        with pytest.raises(wire.RemoteError) as refused:
            conn.call("mget", [b"mget:big"] * 300)
        assert srv.peak_rss_bytes() - before < 32 * MiB
        assert refused.value.name == "FRAME_TOO_LARGE"
        assert "reply of 78643200 bytes of values" in refused.value.message
        assert conn.call("mget", [b"mget:big"] * 3) == [big] * 3  # the connection goes on


def test_mget_sizes_values_stored_under_a_larger_limit_too(tmp_path: Path) -> None:
    # A store written with 4 MiB values, served with --max-value-size 1 KiB: 20 names of
    # one such key are an 80 MiB reply, which must be refused from the keydir as well.
    with bitcask.open(tmp_path / "db", sync="never", max_value_size=4 * MiB) as db:
        db.put(b"old", b"v" * (4 * MiB))
        cfg = ServerConfig(data=tmp_path / "db", port=0, http_port=0)
        d = Dispatcher(
            db, None, cfg,  # type: ignore[arg-type]
            max_key_size=KiB, max_value_size=KiB, server_stats=dict,
        )  # fmt: skip
        outcome = d.call(d.new_session(), "mget", [[b"old"] * 20])
        assert type(outcome) is Read
        with pytest.raises(LocalProtocolError, match="reply of 83886080 bytes of values"):
            outcome.fn(outcome.arg)


def test_a_value_past_the_default_reply_frame_reads_back_when_max_frame_allows_it(
    server_factory: object, tmp_path: Path
) -> None:
    # --max-value-size 70 MiB raises --max-frame with it (to 70 MiB + 65 KiB): a 66 MiB value
    # gets in; the reply that returns it used to be capped at the default frame (65 MiB):
    # put worked, get answered FRAME_TOO_LARGE while RESP and HTTP returned it whole.
    srv = server_factory(sync="never", extra=["--max-value-size", str(70 * MiB)])  # type: ignore[operator]
    big = os.urandom(66 * MiB)
    anon_before = rss_anon(srv)

    async def main() -> None:
        async with client.connect("127.0.0.1", srv.port, timeout=TIMEOUT) as db:
            await db.put(b"huge", big)
            assert await db.get(b"huge") == big
            # The reply's msgpack Packer kept a buffer as large as the largest reply it
            # ever packed: one 64 MiB get left the server 64 MiB larger for good.
            assert rss_anon(srv) - anon_before < 32 * MiB
            with pytest.raises(client.FrameTooLargeError):
                await db.mget([b"huge", b"huge"])  # 132 MiB: over even this server's frame
            assert db.limits.max_frame == 70 * MiB + 64 * KiB + 1024  # value + key + envelope

    asyncio.run(main())


def test_reply_limit_is_the_larger_of_max_frame_and_the_default() -> None:
    assert reply_limit(4096) == DEFAULT_MAX_FRAME
    assert reply_limit(DEFAULT_MAX_FRAME + 1) == DEFAULT_MAX_FRAME + 1
    small = BinaryDialect(max_frame=4096)  # requests of 4 KiB still get default-sized replies
    assert len(small.render(Request(1, "get", [b"k"]), b"v" * 8192, None)) > 8192


class _LongKeys:
    """The store's face the scan handler sees: 2,000 keys of 64 KiB (one object)."""

    key = b"k" * (64 * KiB)

    def get(self, key: bytes) -> None:
        return None

    def scan(self, prefix: bytes, after: bytes | None = None, limit: int = 100) -> list[bytes]:
        return [self.key] * min(limit, 2000)


def test_a_scan_page_of_long_keys_ends_before_its_reply_outgrows_the_frame() -> None:
    # 1,100 keys of 64 KiB on a real server: scan_page(count=1100) and scan(count=2000)
    # answered FRAME_TOO_LARGE (a 72 MB page), so no count over ~1,000 could scan them.
    cfg = ServerConfig(data=Path("unused"), port=0, http_port=0)
    d = Dispatcher(
        _LongKeys(), None, cfg,  # type: ignore[arg-type]
        max_key_size=64 * KiB, max_value_size=64 * MiB, server_stats=dict,
    )  # fmt: skip
    outcome = d.call(d.new_session(), "scan", [{"count": 2000}])
    assert type(outcome) is Read
    cursor, keys = outcome.fn(outcome.arg)
    assert 1000 < len(keys) < 2000 and cursor == keys[-1]  # a short page, and more to come
    reply = BinaryDialect().render(Request(1, "scan", []), [cursor, keys], None)
    assert DEFAULT_MAX_FRAME - 2 * MiB < len(reply) <= DEFAULT_MAX_FRAME  # filled, not over
    outcome = d.call(d.new_session(), "scan", [{"count": 10}])
    assert type(outcome) is Read
    assert outcome.fn(outcome.arg)[1] == [_LongKeys.key] * 10  # short keys' pages: count


def test_engine_paths_keep_values_at_and_past_the_file_size(tmp_path: Path) -> None:
    limits = bitcask.Options(
        sync="never", max_key_size=MAX_KEY, max_value_size=MAX_VALUE, max_file_size=FILE_SIZE
    )
    data, copy = tmp_path / "data", tmp_path / "backup"
    stored = {
        b"max": value(MAX_VALUE, 7),
        b"k" * MAX_KEY: b"x",
        b"zero": b"",
        b"file-size": value(FILE_SIZE, 8),
        b"file-size+1": value(FILE_SIZE + 1, 9),
    }
    with bitcask.open(data, options=limits) as db:
        for key, val in stored.items():
            db.put(key, val)
        db.write_batch([("put", b"batch:1", stored[b"max"]), ("put", b"batch:2", b"")])
        stored.update({b"batch:1": stored[b"max"], b"batch:2": b""})
        with pytest.raises(bitcask.ValueTooLargeError):
            db.put(b"over", stored[b"max"] + b"x")
        with pytest.raises(bitcask.KeyTooLargeError):
            db.put(b"k" * (MAX_KEY + 1), b"x")
        for key, val in stored.items():
            db.put(key, val)  # the first copies become dead bytes for the merge
        db.merge()
        assert {k: db.get(k) for k in stored} == stored
        db.backup(copy)
    for path in (data, copy):  # reopened from the hint files merge and rotation wrote
        with bitcask.open(path, options=limits) as db:
            assert {k: db.get(k) for k in db} == stored
        assert bitcask.check(path).ok


def test_max_frame_follows_max_value_size_and_refuses_a_value_it_cannot_carry() -> None:
    derived = ServerConfig.from_args(["--max-value-size", str(100 * MiB)], env={})
    assert derived.max_frame == 100 * MiB + 64 * KiB + 1024  # binary, HTTP, RESP alike
    # The longest key (1 MiB) with the default largest value: 1 KiB past the default.
    long_keys = ServerConfig.from_args(["--max-key-size", str(MiB)], env={})
    assert long_keys.max_frame == 65 * MiB + 1024
    assert (
        ServerConfig.from_args(["--max-value-size", "1000"], env={}).max_frame == DEFAULT_MAX_FRAME
    )
    small = ServerConfig.from_args(["--max-frame", "4096"], env={})
    assert (small.max_frame, small.max_value_size) == (4096, None)
    for argv in (
        ["--max-value-size", str(100 * MiB), "--max-frame", str(50 * MiB)],
        ["--max-value-size", str(600 * MiB)],  # no frame may reach 512 MiB
    ):
        with pytest.raises(ConfigError, match="does not fit in a frame"):
            ServerConfig.from_args(argv, env={})
