"""docs/protocol.md is enough to write a client: an independent one against a real server.

`tests/spec/_wire_client.py` was written from the document only (socket + msgpack).
These tests drive every method of section 3 with the params and result shapes the
table gives, and trigger the error codes of section 4 with the inputs the document
names, against `python -m server` on 127.0.0.1 (tests/serverproc.py).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.serverproc import ServerProcess
from tests.spec._wire_client import Closed, ServerError, WireClient, frame

LIMITS = ["--max-key-size", "100", "--max-value-size", "1000", "--max-batch", "4"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("spec") / "data"
    data.mkdir()
    proc = ServerProcess(data=data, extra=LIMITS)
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def c(srv: ServerProcess) -> Iterator[WireClient]:
    with WireClient(srv.host, srv.port) as client:
        yield client


def as_params(params: Any) -> list[Any]:
    """A params list out of a table of (method, params) cases (for the type checker)."""
    assert isinstance(params, list)
    return params


def start(tmp_path: Path, name: str, *extra: str) -> ServerProcess:
    data = tmp_path / name
    data.mkdir()
    return ServerProcess(data=data, extra=list(extra)).start()


# ---- section 2/3: messages and every method ---------------------------------------


def test_hello_shape(c: WireClient) -> None:
    for params in ([], [{"protocol": 1}], [{"protocol": 1, "client": "spec"}]):
        hello = c.call("hello", *params)
        assert hello["server"] == "bitcask" and hello["protocol"] == 1
        assert isinstance(hello["version"], str)
        assert hello["auth_required"] is False
        assert hello["authenticated"] is True, "nothing to check: every connection has it"
        limits = hello["limits"]
        assert limits == {
            "max_key_size": 100,
            "max_value_size": 1000,
            "max_frame": 64 * 2**20 + 2**20,
            "max_batch": 4,
        }
    err = c.error("hello", {"protocol": 2})
    assert (err.code, err.name) == (103, "UNSUPPORTED_VERSION")


def test_auth_without_a_token_configured_answers_true(c: WireClient) -> None:
    assert c.call("auth", "anything") is True
    assert c.call("auth", b"bytes too") is True


def test_ping(c: WireClient) -> None:
    assert c.call("ping") == "PONG"
    assert c.call("ping", b"payload") == b"payload"
    assert c.call("ping", "text") == "text"


def test_get_put_delete_exists_ttl(c: WireClient) -> None:
    assert c.call("get", b"g:missing") is None
    assert c.call("put", b"g:k", b"v") is True
    assert c.call("get", b"g:k") == b"v"
    assert c.call("get", "g:k") == b"v", "a str key is UTF-8 encoded; replies carry bin"
    assert c.call("put", "g:s", "text") is True
    assert c.call("get", b"g:s") == b"text"
    assert c.call("exists", b"g:k") is True
    assert c.call("exists", b"g:missing") is False
    assert c.call("ttl", b"g:k") == -1 and isinstance(c.call("ttl", b"g:k"), int)
    assert c.call("ttl", b"g:missing") == -2 and isinstance(c.call("ttl", b"g:missing"), int)
    assert c.call("put", b"g:t", b"v", {"ttl": 100}) is True
    ttl = c.call("ttl", b"g:t")
    assert isinstance(ttl, float) and 99 < ttl <= 100
    assert c.call("put", b"g:f", b"v", {"ttl": 0.5}) is True
    assert 0 < c.call("ttl", b"g:f") <= 0.5
    assert c.call("put", b"g:short", b"v", {"ttl": 0.05}) is True
    deadline = time.monotonic() + 10
    while c.call("get", b"g:short") is not None:  # bounded wait for the expiry
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert c.call("ttl", b"g:short") == -2 and c.call("exists", b"g:short") is False
    assert c.call("delete", b"g:k") is True
    assert c.call("delete", b"g:k") is False
    assert c.call("get", b"g:k") is None


def test_put_ttl_out_of_range_is_invalid_params(c: WireClient) -> None:
    for ttl in (0, -1, math.nan, math.inf, 9.3e15, "10"):
        err = c.error("put", b"t:k", b"v", {"ttl": ttl})
        assert err.name == "INVALID_PARAMS", ttl
    assert c.error("put", b"t:k", b"v", {"tll": 5}).name == "INVALID_PARAMS"
    assert c.call("put", b"t:k", b"v", {"ttl": 9.2e15}) is True, "now + ttl < 2**63 ms"
    assert c.call("get", b"t:k") == b"v"


def test_mget_mput_batch(c: WireClient) -> None:
    assert c.call("mput", {b"m:a": b"1", b"m:b": b"2"}) is True
    assert c.call("mput", [[b"m:c", b"x"], [b"m:c", b"3"]]) is True, "pairs: last wins"
    assert c.call("mget", [b"m:c", b"m:nope", b"m:a"]) == [b"3", None, b"1"]
    ops = [
        ["put", b"m:d", b"4"],
        ["delete", b"m:a"],
        ["delete", b"m:nope"],
        ["put", b"m:e", b"5", {"ttl": 60}],
    ]
    assert c.call("batch", ops) == [True, True, False, True]
    assert c.call("mget", [b"m:a", b"m:d", b"m:e"]) == [None, b"4", b"5"]
    assert c.error("batch", [["put", b"m:f", b"v", {"ttl": 0}]]).name == "INVALID_PARAMS"
    assert c.call("get", b"m:f") is None


def test_scan_pages(c: WireClient) -> None:
    keys = [b"s:%d" % i for i in range(4)]
    c.call("mput", [[k, b"v"] for k in reversed(keys)])
    cursor, page = c.call("scan", {"prefix": b"s:", "count": 2})
    assert page == keys[:2] and cursor is not None
    last, page = c.call("scan", {"prefix": b"s:", "count": 2, "cursor": cursor})
    assert page == keys[2:] and last is None, "the last page carries nil even when full"
    assert c.call("scan", {"prefix": b"s:", "cursor": keys[0]}) == [None, keys[1:]]
    assert c.call("scan", {"prefix": b"s:", "cursor": None}) == [None, keys]
    cursor, page = c.call("scan")
    assert len(page) <= 100 and page == sorted(page)
    for count in (0, 10_001):
        assert c.error("scan", {"count": count}).name == "INVALID_PARAMS"
    assert c.call("scan", {"prefix": b"s:", "count": 10_000}) == [None, keys]


def test_stats_merge_sync(c: WireClient) -> None:
    stats = c.call("stats")
    for field in (
        "path", "keys", "keydir_bytes", "keydir_bytes_per_key", "live_bytes", "dead_bytes",
        "disk_bytes", "files", "active_file", "sync", "readonly", "readonly_reason",
        "merging", "merges", "last_merge_error", "recovery", "server",
    ):  # fmt: skip
        assert field in stats, field
    assert {"id", "size", "live_bytes", "dead_bytes"} <= set(stats["files"][0])
    assert {"writer_mode", "ready", "snapshots"} <= set(stats["server"])
    assert c.call("sync") is True
    report = c.call("merge")
    for field in (
        "inputs", "outputs", "bytes_before", "bytes_after", "reclaimed_bytes",
        "records_copied", "records_dropped", "tombstones_kept", "expired_dropped", "seconds",
    ):  # fmt: skip
        assert field in report, field


def test_set_options(c: WireClient) -> None:
    assert c.call("set", b"x:k", b"1") is True
    assert c.call("set", b"x:k", b"2", {"nx": True}) is False
    assert c.call("set", b"x:new", b"2", {"xx": True}) is False
    assert c.call("set", b"x:k", b"3", {"xx": True, "get": True}) == b"1"
    assert c.call("set", b"x:none", b"3", {"get": True}) is None
    assert c.call("set", b"x:k", b"4", {"ttl": 100}) is True
    assert c.call("set", b"x:k", b"5", {"keep_ttl": True}) is True
    assert 99 < c.call("ttl", b"x:k") <= 100
    assert c.call("set", b"x:k", b"6") is True
    assert c.call("ttl", b"x:k") == -1, "without an expiry option the key has none"
    at_ms = int(time.time() * 1000) + 50_000
    assert c.call("set", b"x:k", b"7", {"at_ms": at_ms}) is True
    assert 40 < c.call("ttl", b"x:k") <= 50
    assert c.call("set", b"x:k", b"8", {"at_ms": 1}) is True
    assert c.call("get", b"x:k") is None, "an at_ms in the past deletes the key"
    for bad in ({"at_ms": 0}, {"at_ms": 2**63}, {"nx": True, "xx": True}, {"bogus": 1}):
        assert c.error("set", b"x:k", b"v", bad).name == "INVALID_PARAMS", bad


def test_incr_incr_float_append(c: WireClient) -> None:
    assert c.call("incr", b"n:a") == 1
    assert c.call("incr", b"n:a", -11) == -10
    c.call("put", b"n:max", str(2**63 - 1).encode())
    err = c.error("incr", b"n:max")
    assert (err.code, err.name) == (410, "NOT_A_NUMBER")
    for text in (b"+1", b" 1", b"01", b"1.0", b"abc"):
        c.call("put", b"n:bad", text)
        assert c.error("incr", b"n:bad").name == "NOT_A_NUMBER", text
        assert c.call("get", b"n:bad") == text
    c.call("put", b"n:f", b"10.5")
    assert c.call("incr_float", b"n:f", 0.1) == b"10.6"
    c.call("put", b"n:big", b"1e308")
    assert c.error("incr_float", b"n:big", 1e308).name == "NOT_A_NUMBER"
    assert c.error("incr_float", b"n:f", math.inf).name == "INVALID_PARAMS"
    assert c.call("append", b"n:s", b"ab") == 2
    assert c.call("append", b"n:s", b"c") == 3
    err = c.error("append", b"n:s", b"x" * 998)
    assert (err.code, err.name) == (301, "VALUE_TOO_LARGE")
    assert c.call("get", b"n:s") == b"abc"


def test_get_delete_expire_persist_rename(c: WireClient) -> None:
    c.call("put", b"e:k", b"v")
    assert c.call("get_delete", b"e:k") == b"v"
    assert c.call("get_delete", b"e:k") is None
    assert c.call("expire", b"e:k", {"ttl": 10}) is False, "false for a missing key"
    c.call("put", b"e:k", b"v")
    assert c.call("expire", b"e:k", {"ttl": 100, "cond": "xx"}) is False
    assert c.call("expire", b"e:k", {"ttl": 100, "cond": "gt"}) is False, "no expiry = never"
    assert c.call("expire", b"e:k", {"ttl": 100, "cond": "nx"}) is True
    later = int(time.time() * 1000) + 200_000
    assert c.call("expire", b"e:k", {"at_ms": later, "cond": "lt"}) is False
    assert c.call("expire", b"e:k", {"at_ms": later, "cond": "gt"}) is True
    assert c.call("persist", b"e:k") is True
    assert c.call("persist", b"e:k") is False
    assert c.call("ttl", b"e:k") == -1
    assert c.error("expire", b"e:k", {}).name == "INVALID_PARAMS", "needs ttl or at_ms"
    c.call("put", b"e:k", b"v", {"ttl": 100})
    assert c.call("rename", b"e:k", b"e:j") is True
    assert c.call("get", b"e:j") == b"v" and 99 < c.call("ttl", b"e:j") <= 100
    c.call("put", b"e:k", b"other")
    assert c.call("rename", b"e:j", b"e:k", {"nx": True}) is False
    assert c.call("get", b"e:j") == b"v"
    err = c.error("rename", b"e:missing", b"e:x")
    assert (err.code, err.name) == (411, "NO_SUCH_KEY")
    assert c.call("expire", b"e:k", {"at_ms": 1}) is True, "a past expiry deletes (true)"
    assert c.call("exists", b"e:k") is False


def test_watch_unwatch_commit(srv: ServerProcess, c: WireClient) -> None:
    c.call("put", b"w:k", b"1")
    wid = c.call("watch", [b"w:k"])
    assert isinstance(wid, int) and wid >= 1
    ops = [["incr", b"w:k"], ["append", b"w:log", b"x"], ["rename", b"w:missing", b"w:y"]]
    result = c.call("commit", ops, {"watch": wid})
    assert result[:2] == [2, 1]
    assert result[2]["error"][:2] == [411, "NO_SUCH_KEY"]
    assert c.call("commit", [["put", b"w:k", b"9"]], {"watch": wid}) is None, "consumed"
    assert c.call("commit", [["put", b"w:k", b"9"]], {"watch": 999}) is None, "not held"
    wid = c.call("watch", [b"w:k"])
    with WireClient(srv.host, srv.port) as other:
        other.call("put", b"w:k", b"2")  # the same value it had: still a write
    assert c.call("commit", [["put", b"w:k", b"3"]], {"watch": wid}) is None
    assert c.call("get", b"w:k") == b"2"
    wid = c.call("watch", [b"w:k"])
    assert c.call("unwatch", wid) is True
    assert c.call("commit", [["put", b"w:k", b"4"]], {"watch": wid}) is None
    assert c.call("unwatch") is True
    assert c.call("commit", [["put", b"w:k", b"5"], ["delete", b"w:k"]]) == [True, True]
    assert c.error("commit", [["nope", b"w:k"]]).name == "INVALID_PARAMS"
    err = c.error("commit", [["incr", b"w:n"]] * 5)
    assert (err.code, err.name) == (304, "BATCH_TOO_LARGE"), "more ops than max_batch"
    assert c.call("get", b"w:n") is None
    assert c.error("watch", [b"w:%d" % i for i in range(5)]).name == "BATCH_TOO_LARGE"
    held = [c.call("watch", [b"w:k"]) for _ in range(64)]
    assert len(set(held)) == 64
    err = c.error("watch", [b"w:k"])
    assert (err.code, err.name) == (304, "BATCH_TOO_LARGE"), "64 watches held"


def test_clear(tmp_path: Path) -> None:
    proc = start(tmp_path, "clear")
    try:
        with WireClient(proc.host, proc.port) as c:
            c.call("mput", {b"a": b"1", b"b": b"2", b"c": b"3"})
            assert c.call("clear") == 3
            assert c.call("scan") == [None, []]
            assert c.call("clear") == 0
    finally:
        proc.kill()


def test_snapshot(srv: ServerProcess, c: WireClient) -> None:
    c.call("put", b"snap:k", b"v" * 500)
    snap = c.call("snapshot_begin", {"timeout": 30})
    assert {"id", "files", "manifest"} <= set(snap)
    names = [f["name"] for f in snap["files"]]
    assert any(n.endswith(".data") for n in names) and any(n.endswith(".hint") for n in names)
    total = 0
    for f in snap["files"]:
        data, offset = b"", 0
        while True:
            chunk = c.call("snapshot_read", snap["id"], f["name"], offset, 1000)
            assert isinstance(chunk, bytes) and len(chunk) <= 1000
            if not chunk:
                break
            data += chunk
            offset += len(chunk)
        assert len(data) == f["size"] and zlib.crc32(data) == f["crc"], f["name"]
        total += len(data)
    with WireClient(srv.host, srv.port) as other:
        err = other.error("snapshot_read", snap["id"], names[0], 0, 10)
        assert (err.code, err.name) == (412, "NO_SUCH_SNAPSHOT"), "another connection's id"
    for length in (0, 1_048_577):
        err = c.error("snapshot_read", snap["id"], names[0], 0, length)
        assert err.name == "INVALID_PARAMS", length
    err = c.error("snapshot_read", snap["id"], "0000009999.data", 0, 10)
    assert err.name == "INVALID_PARAMS", "a name that is not one of files"
    assert c.error("snapshot_read", snap["id"], names[0], -1, 10).name == "INVALID_PARAMS"
    assert c.call("snapshot_read", snap["id"], names[0], 10**9, 10) == b"", "past its end"
    assert c.call("snapshot_end", snap["id"]) == {"complete": True, "bytes": total}
    assert c.error("snapshot_end", snap["id"]).name == "NO_SUCH_SNAPSHOT"
    assert c.error("snapshot_read", snap["id"], names[0], 0, 10).name == "NO_SUCH_SNAPSHOT"


# ---- section 4: error codes and their triggers --------------------------------------


def test_general_errors_keep_the_connection(c: WireClient) -> None:
    err = c.error("no_such_method")
    assert (err.code, err.name) == (101, "UNKNOWN_METHOD")
    for method, params in [("get", []), ("get", [1]), ("put", [b"k"]), ("mget", [b"k"])]:
        err = c.error(method, *as_params(params))
        assert (err.code, err.name) == (102, "INVALID_PARAMS"), (method, params)
        assert err.msgid > 0
    assert c.call("ping") == "PONG"


def test_size_limits(c: WireClient) -> None:
    err = c.error("put", b"k" * 101, b"v")
    assert (err.code, err.name) == (300, "KEY_TOO_LARGE")
    assert c.call("put", b"k" * 100, b"v") is True
    for method, params in [
        ("get", [b"k" * 101]),
        ("delete", [b"k" * 101]),
        ("exists", [b"k" * 101]),
        ("ttl", [b"k" * 101]),
        ("mget", [[b"k" * 101]]),
        ("scan", [{"prefix": b"k" * 101}]),
        ("scan", [{"cursor": b"k" * 101}]),
    ]:
        assert c.error(method, *as_params(params)).name == "KEY_TOO_LARGE", (method, params)
    err = c.error("put", b"big", b"v" * 1001)
    assert (err.code, err.name) == (301, "VALUE_TOO_LARGE")
    assert c.call("put", b"big", b"v" * 1000) is True
    for method, params in [
        ("mget", [[b"a"] * 5]),
        ("mput", [[[b"b%d" % i, b"v"] for i in range(5)]]),
        ("batch", [[["delete", b"a"]] * 5]),
    ]:
        err = c.error(method, *as_params(params))
        assert (err.code, err.name) == (304, "BATCH_TOO_LARGE"), method


def test_corrupt_record(tmp_path: Path) -> None:
    proc = start(tmp_path, "corrupt", "--merge-trigger", "0")
    try:
        with WireClient(proc.host, proc.port) as c:
            c.call("put", b"k", b"precious value")
            c.call("put", b"other", b"fine")
        proc.stop()
        (data_file,) = sorted(proc.data.glob("*.data"))
        buf = bytearray(data_file.read_bytes())
        buf[buf.index(b"precious")] ^= 0x20
        data_file.write_bytes(bytes(buf))
        for hint in proc.data.glob("*.hint"):
            hint.unlink()
        proc.start()
        with WireClient(proc.host, proc.port) as c:
            for method, params in [("get", [b"k"]), ("mget", [[b"other", b"k"]])]:
                err = c.error(method, *as_params(params))
                assert (err.code, err.name) == (402, "CORRUPT_RECORD"), method
            assert c.call("get", b"other") == b"fine"
    finally:
        proc.kill()


def test_store_full(tmp_path: Path) -> None:
    proc = start(tmp_path, "full", "--max-keys", "2")
    try:
        with WireClient(proc.host, proc.port) as c:
            c.call("mput", {b"a": b"1", b"b": b"2"})
            for method, params in [
                ("put", [b"c", b"3"]),
                ("set", [b"c", b"3"]),
                ("incr", [b"c"]),
                ("append", [b"c", b"x"]),
                ("mput", [{b"c": b"3"}]),
            ]:
                err = c.error(method, *as_params(params))
                assert (err.code, err.name) == (404, "STORE_FULL"), method
            assert c.call("put", b"a", b"overwrite") is True
            assert c.call("rename", b"a", b"z") is True  # never STORE_FULL: no key added
            assert c.call("get", b"z") == b"overwrite" and c.call("get", b"a") is None
            assert c.call("rename", b"z", b"b") is True  # onto an existing key
            assert c.call("get", b"b") == b"overwrite"
            assert c.call("mput", {b"a": b"1", b"b": b"2"}) is True
            assert c.call("get", b"b") == b"2"
            assert c.call("delete", b"b") is True
            assert c.call("put", b"c", b"3") is True
    finally:
        proc.kill()


def test_auth(tmp_path: Path) -> None:
    proc = start(tmp_path, "auth", "--auth", "s3cret")
    try:
        with WireClient(proc.host, proc.port) as c:
            hello = c.call("hello")
            assert (hello["auth_required"], hello["authenticated"]) == (True, False)
            assert c.call("ping") == "PONG"
            for method, params in [("get", [b"k"]), ("no_such_method", []), ("get", [])]:
                err = c.error(method, *as_params(params))
                assert (err.code, err.name) == (200, "AUTH_REQUIRED"), method
            err = c.error("auth", "wrong")
            assert (err.code, err.name) == (201, "AUTH_FAILED")
            assert c.error("get", b"k").name == "AUTH_REQUIRED", "still unauthenticated"
            err = c.error("hello", {"protocol": 1, "auth": "wrong"})
            assert err.name == "AUTH_FAILED"
            assert c.call("auth", "s3cret") is True
            assert c.call("get", b"k") is None
        with WireClient(proc.host, proc.port) as c:
            hello = c.call("hello", {"protocol": 1, "auth": b"s3cret"})
            assert hello["authenticated"] is True
            assert c.call("put", b"k", b"v" * 20_000) is True, "the 16 KiB limit is lifted"
        with WireClient(proc.host, proc.port) as c:  # exactly 16,384 bytes: accepted
            pad = 16_384 - len(frame([0, 1, "hello", [{"client": "x" * 1000}]])) + 1004
            body = frame([0, 1, "hello", [{"client": "x" * pad}]])
            assert len(body) == 4 + 16_384
            c.send_raw(body)
            assert c.reply(1)["authenticated"] is False
        with WireClient(proc.host, proc.port) as c:
            c.send_raw((16_385).to_bytes(4, "big"))
            _kind, msgid, error, _result = c.read_message()
            assert (msgid, error[0], error[1]) == (0, 302, "FRAME_TOO_LARGE")
            with pytest.raises((Closed, ConnectionError)):
                c.read_message()
    finally:
        proc.kill()


def fatal(c: WireClient, data: bytes) -> tuple[int, int, str]:
    """Send bad bytes; the (msgid, code, name) of the one error, then the close."""
    c.send_raw(data)
    _kind, msgid, error, result = c.read_message()
    assert result is None
    with pytest.raises((Closed, ConnectionError)):
        c.read_message()
    return msgid, error[0], error[1]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"\x00\x00\x00\x00", (0, 100, "PROTOCOL_ERROR"), id="empty-frame"),
        pytest.param(b"\x00\x00\x00\x01\xc1", (0, 100, "PROTOCOL_ERROR"), id="bad-msgpack"),
        pytest.param(b"\x00\x00\x00\x02\x90\x90", (0, 100, "PROTOCOL_ERROR"), id="trailing-bytes"),
        pytest.param(frame([1, 5, None, True]), (0, 100, "PROTOCOL_ERROR"), id="a-response"),
        pytest.param(frame({"a": 1}), (0, 100, "PROTOCOL_ERROR"), id="a-map"),
        pytest.param(frame([0, 7, "get"]), (7, 100, "PROTOCOL_ERROR"), id="three-fields"),
        pytest.param(frame([0, 8, "get", b"k"]), (8, 100, "PROTOCOL_ERROR"), id="params-bin"),
        pytest.param(frame([0, 9, 5, []]), (9, 100, "PROTOCOL_ERROR"), id="method-int"),
        pytest.param(frame([0, 10, b"get", [b"k"]]), (10, 100, "PROTOCOL_ERROR"), id="method-bin"),
        pytest.param(frame([0, 2**32, "ping", []]), (0, 100, "PROTOCOL_ERROR"), id="msgid>u32"),
        pytest.param(frame([0, -1, "ping", []]), (0, 100, "PROTOCOL_ERROR"), id="msgid<0"),
        pytest.param(b"\x80", (0, 100, "PROTOCOL_ERROR"), id="first-byte-0x80"),
        pytest.param(b"\x7f", (0, 100, "PROTOCOL_ERROR"), id="first-byte-0x7f"),
        pytest.param(
            (68_157_441).to_bytes(4, "big"), (0, 302, "FRAME_TOO_LARGE"), id="over-max-frame"
        ),
        pytest.param(b"\x1f\x00\x00\x00", (0, 302, "FRAME_TOO_LARGE"), id="first-byte-0x1f"),
    ],
)
def test_fatal_errors(srv: ServerProcess, data: bytes, expected: tuple[int, int, str]) -> None:
    with WireClient(srv.host, srv.port) as c:
        assert fatal(c, data) == expected


def test_fatal_error_answers_what_came_before_and_runs_nothing_after(
    srv: ServerProcess,
) -> None:
    with WireClient(srv.host, srv.port) as c:
        before = frame([0, 1, "put", [b"f:before", b"1"]])
        after = frame([0, 3, "put", [b"f:after", b"1"]])
        c.send_raw(before + b"\x00\x00\x00\x00" + after)
        assert c.read_message() == [1, 1, None, True]
        _kind, msgid, error, _result = c.read_message()
        assert (msgid, error[1]) == (0, "PROTOCOL_ERROR")
        with pytest.raises((Closed, ConnectionError)):
            c.read_message()
    with WireClient(srv.host, srv.port) as c:
        assert c.call("mget", [b"f:before", b"f:after"]) == [b"1", None]


def test_pipelined_replies_matched_by_msgid(c: WireClient) -> None:
    ids = [c.send("put", [b"p:%d" % i, b"%d" % i]) for i in range(50)]
    gets = [c.send("get", [b"p:%d" % i]) for i in range(50)]
    assert all(c.reply(i) is True for i in reversed(ids))
    assert [c.reply(g) for g in gets] == [b"%d" % i for i in range(50)]


def test_msgid_wraps_and_skips_zero(c: WireClient) -> None:
    c.next_id = 2**32 - 1
    assert c.call("ping") == "PONG"
    assert c.next_id == 1
    assert c.call("ping") == "PONG"


def test_connection_cap_refusal(tmp_path: Path) -> None:
    proc = start(tmp_path, "cap", "--max-connections", "1")
    try:
        first = None
        deadline = time.monotonic() + 10
        while first is None:  # the start-up probes' connections may still be counted
            candidate = WireClient(proc.host, proc.port)
            try:
                assert candidate.call("ping") == "PONG"
                first = candidate
            except (Closed, ConnectionError, AssertionError):
                candidate.close()
                assert time.monotonic() < deadline, "the one connection never got in"
                time.sleep(0.1)
        with first, socket.create_connection((proc.host, proc.port), timeout=10) as second:
            line = b""
            while not line.endswith(b"\n"):
                chunk = second.recv(100)
                if not chunk:
                    break
                line += chunk
            assert line == b"-ERR max number of clients reached\r\n"
            assert line[0] == 0x2D
    finally:
        proc.kill()


def test_unsupported_extension_value_is_invalid_params(srv: ServerProcess) -> None:
    """Extension types are not used by the protocol: one where a param goes is
    INVALID_PARAMS (section 2), never INTERNAL, and the connection stays open."""
    with WireClient(srv.host, srv.port) as c:
        body = msgpack.packb([0, 4, "get", [msgpack.ExtType(1, b"x")]], use_bin_type=True)
        c.send_raw(len(body).to_bytes(4, "big") + body)
        _kind, msgid, error, _result = c.read_message()
        assert msgid == 4 and error[1] == "INVALID_PARAMS", error
        assert c.call("ping") == "PONG"


def test_no_input_is_answered_internal(c: WireClient) -> None:
    """A sweep of odd params over every method: never INTERNAL (section 3)."""
    odd: list[Any] = [None, True, -1, 2**64 - 1, 1.5, "s", b"b", [], {}, [b"k"], {"x": 1}]
    methods = [
        "hello", "auth", "ping", "get", "put", "delete", "exists", "ttl", "mget", "mput",
        "batch", "scan", "set", "incr", "incr_float", "append", "get_delete", "expire",
        "persist", "rename", "watch", "unwatch", "commit", "snapshot_read", "snapshot_end",
    ]  # fmt: skip
    for method in methods:
        for value in odd:
            for params in ([value], [b"odd:k", value], [b"odd:k", b"v", value]):
                try:
                    c.call(method, *params)
                except ServerError as exc:
                    assert exc.name != "INTERNAL", (method, params, exc)


def test_unknown_option_names_are_invalid_params(c: WireClient) -> None:
    """Section 3: an option name the method does not know, in any options map."""
    c.call("put", b"o:k", b"v")
    for method, params in [
        ("hello", [{"protocol": 1, "bogus": 1}]),
        ("put", [b"o:k", b"v", {"bogus": 1}]),
        ("set", [b"o:k", b"v", {"bogus": 1}]),
        ("expire", [b"o:k", {"ttl": 5, "bogus": 1}]),
        ("rename", [b"o:k", b"o:j", {"bogus": 1}]),
        ("scan", [{"bogus": 1}]),
        ("commit", [[["put", b"o:k", b"v"]], {"bogus": 1}]),
        ("batch", [[["put", b"o:k", b"v", {"bogus": 1}]]]),
        ("snapshot_begin", [{"bogus": 1}]),
    ]:
        err = c.error(method, *as_params(params))
        assert (err.code, err.name) == (102, "INVALID_PARAMS"), method
    assert c.call("get", b"o:k") == b"v" and c.call("ttl", b"o:k") == -1


def test_msgid_zero_is_still_answered(c: WireClient) -> None:
    c.send_raw(frame([0, 0, "ping", []]))
    assert c.read_message() == [1, 0, None, "PONG"]
    assert c.call("ping") == "PONG"


def test_merge_in_progress(tmp_path: Path) -> None:
    """A merge request while another connection's merge runs: MERGE_IN_PROGRESS."""
    proc = start(tmp_path, "merging", "--max-file-size", "1000000", "--merge-trigger", "0")
    try:
        with WireClient(proc.host, proc.port) as a, WireClient(proc.host, proc.port) as b:
            seen: list[str] = []
            for attempt in range(4):  # bounded: more data each time makes the merge longer
                for j in range(10 * (attempt + 1)):
                    a.call("mput", [[b"m:%d:%d" % (j, i), b"v" * 1000] for i in range(500)])
                a.send_raw(frame([0, 1000 + attempt, "merge", []]))
                b.send_raw(frame([0, 2000 + attempt, "merge", []]))
                for client, msgid in ((a, 1000 + attempt), (b, 2000 + attempt)):
                    try:
                        assert "inputs" in client.reply(msgid)
                        seen.append("ok")
                    except ServerError as exc:
                        assert (exc.code, exc.name) == (403, "MERGE_IN_PROGRESS")
                        seen.append(exc.name)
                if "MERGE_IN_PROGRESS" in seen:
                    break
            assert "ok" in seen and "MERGE_IN_PROGRESS" in seen, seen
    finally:
        proc.kill()


def test_shutting_down_refuses_writes_it_did_not_apply(tmp_path: Path) -> None:
    """SIGTERM under a pipeline: every write answered true is kept, every write answered
    SHUTTING_DOWN (501) is not applied; the rest are unanswered (section 6)."""
    proc = start(tmp_path, "stopping", "--drain-seconds", "0", "--shutdown-timeout", "5")
    answers: dict[int, str] = {}
    try:
        with WireClient(proc.host, proc.port) as c:
            assert c.call("ping") == "PONG"
            c.send_raw(b"".join(frame([0, i, "put", [b"k%d" % i, b"v" * 1000]]) for i in ids()))
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            with pytest.raises((Closed, ConnectionError)):
                while True:
                    _kind, msgid, error, _result = c.read_message()
                    answers[msgid] = "ok" if error is None else error[1]
                    assert error is None or tuple(error[:2]) == (501, "SHUTTING_DOWN"), error
        assert proc.proc.wait(30) == 0
        proc.proc = None
        proc.start()
        with WireClient(proc.host, proc.port) as c:
            for i in ids():
                stored = c.call("get", b"k%d" % i) is not None
                if answers.get(i) == "ok":
                    assert stored, i
                elif answers.get(i) == "SHUTTING_DOWN":
                    assert not stored, i
    finally:
        proc.kill()


def ids() -> range:
    return range(2, 3002)


@pytest.mark.parametrize("first", [b"\t", b"\n", b"\r"], ids=["tab", "lf", "cr"])
def test_tab_cr_lf_start_text(srv: ServerProcess, first: bytes) -> None:
    """Section 1: 0x09, 0x0A, 0x0D would announce a frame over max_frame: they are text."""
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(first + b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(100)
            assert chunk, reply
            reply += chunk
        assert reply == b"+PONG\r\n"


def require(binary: str, package: str) -> str:
    """The path of `binary`; skip (fail under CI=true) naming the Debian package."""
    path = shutil.which(binary)
    if path is None:
        reason = f"{binary} not installed (Debian package {package})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


class FileSizeLimited(ServerProcess):
    """A server whose files may not grow past RLIMIT_FSIZE: a real write failure."""

    def argv(self) -> list[str]:
        return [require("prlimit", "util-linux"), "--fsize=300000", "--", *super().argv()]


def test_io_error_then_read_only(tmp_path: Path) -> None:
    """A failed write answers IO_ERROR and is not applied; then writes answer READ_ONLY
    while reads go on; everything acknowledged before survives a restart."""
    data = tmp_path / "fsize"
    data.mkdir()
    proc = FileSizeLimited(data=data, extra=["--max-file-size", "1000000"]).start()
    acked = 0
    try:
        with WireClient(proc.host, proc.port) as c:
            failed = None
            for i in range(1000):  # bounded: 1000 puts of 1 KiB pass the 300 kB limit
                try:
                    c.call("put", b"k%d" % i, b"v" * 1000)
                    acked += 1
                except ServerError as exc:
                    failed = exc
                    break
            assert failed is not None and (failed.code, failed.name) == (401, "IO_ERROR")
            assert c.call("get", b"k%d" % acked) is None, "the failed put is not applied"
            for method, params in [
                ("put", [b"x", b"1"]),
                ("delete", [b"k0"]),
                ("mput", [{b"x": b"1"}]),
                ("incr", [b"n"]),
                ("sync", []),
                ("merge", []),
                ("snapshot_begin", []),
            ]:
                err = c.error(method, *as_params(params))
                assert (err.code, err.name) == (400, "READ_ONLY"), method
            assert c.call("get", b"k0") == b"v" * 1000, "reads go on"
            assert c.call("stats")["readonly"] is True
        proc.stop()
        proc = ServerProcess(data=data).start()
        with WireClient(proc.host, proc.port) as c:
            keys = [b"k%d" % i for i in range(acked + 1)]
            values = [c.call("get", k) for k in keys]
            assert values[:acked] == [b"v" * 1000] * acked
            assert values[acked] is None
    finally:
        proc.kill()
