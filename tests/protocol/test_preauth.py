"""The pre-AUTH limits of protocol.Connection, sans-IO: Redis's for RESP (at most 10
arguments of at most 16,384 bytes), UNAUTH_MAX_FRAME for binary frames; fed whole and
byte by byte; lifted by set_authenticated(True), back with set_authenticated(False)."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest

from protocol import Connection
from protocol._events import Close
from protocol.connection import UNAUTH_MAX_FRAME
from protocol.messages import Request


def _bulk(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def _frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _feed(conn: Connection, data: bytes, split: bool) -> list[Any]:
    if split:
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
    else:
        conn.receive_data(data)
    return conn.events()


SPLITS = [pytest.param(False, id="whole"), pytest.param(True, id="byte-by-byte")]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"*11\r\n", b"unauthenticated multibulk length", id="count"),
        pytest.param(b"*1\r\n$16385\r\n", b"unauthenticated bulk length", id="bulk"),
    ],
)
def test_resp_limits_before_auth(data: bytes, error: bytes, split: bool) -> None:
    conn = Connection(auth_required=True)
    events = _feed(conn, _bulk(b"PING") + data + _bulk(b"PING"), split)
    events += conn.resume()  # before AUTH one command is read at a time
    assert [type(e) for e in events] == [Request, Close]
    assert events[1].data == b"-ERR Protocol error: " + error + b"\r\n"


@pytest.mark.parametrize("split", SPLITS)
def test_resp_at_the_limits_and_after_auth(split: bool) -> None:
    conn = Connection(auth_required=True)
    argv = [b"MSET", *[b"k"] * 8, b"x" * 16384]  # 10 arguments, the largest of 16,384
    assert [e.params for e in _feed(conn, _bulk(*argv), split)] == [argv]
    conn.set_authenticated(True)
    big = _bulk(b"SET", b"k", b"v" * 100_000)
    assert [len(e.params[2]) for e in _feed(conn, big, split)] == [100_000]
    conn.set_authenticated(False)  # RESET
    assert type(_feed(conn, b"*11\r\n", split)[0]) is Close


def test_resp_reads_one_command_at_a_time_before_auth() -> None:
    # redis-benchmark -a sends AUTH and its first MSET (21 arguments) in one write:
    # Redis runs AUTH before it reads the MSET, so the limits no longer apply to it
    conn = Connection(auth_required=True)
    mset = [b"MSET", *[b"k", b"v" * 20_000] * 10]
    events = _feed(conn, _bulk(b"AUTH", b"t") + _bulk(*mset) + _bulk(b"PING"), False)
    assert [e.params for e in events] == [[b"AUTH", b"t"]]
    conn.set_authenticated(True)  # the server ran AUTH
    assert [e.params for e in conn.resume()] == [mset, [b"PING"]]
    assert conn.resume() == []
    # a failed AUTH leaves the limits on for what follows it
    conn = Connection(auth_required=True)
    events = _feed(conn, _bulk(b"AUTH", b"bad") + _bulk(*mset), False)
    assert [e.params for e in events] == [[b"AUTH", b"bad"]]
    conn.set_authenticated(False)
    closed = conn.resume()
    assert [type(e) for e in closed] == [Close]
    assert closed[0].data == b"-ERR Protocol error: unauthenticated multibulk length\r\n"


def test_no_limits_without_auth_required() -> None:
    conn = Connection()
    assert len(_feed(conn, _bulk(*[b"x"] * 11), False)) == 1
    conn = Connection()
    conn.set_authenticated(False)  # no-op: nothing to limit
    assert len(_feed(conn, _frame([0, 1, "put", [b"k", b"v" * 100_000]]), False)) == 1


@pytest.mark.parametrize("split", SPLITS)
def test_binary_frame_limit_before_auth(split: bool) -> None:
    conn = Connection(auth_required=True)
    ok = _frame([0, 1, "auth", ["t"]])
    events = _feed(conn, ok + struct.pack(">I", UNAUTH_MAX_FRAME + 1), split)
    assert [type(e) for e in events] == [Request, Close]
    assert events[1].error.name == "FRAME_TOO_LARGE"


def test_binary_limit_lifted_after_auth() -> None:
    conn = Connection(auth_required=True)
    assert len(_feed(conn, _frame([0, 1, "auth", ["t"]]), False)) == 1
    conn.set_authenticated(True)
    events = _feed(conn, _frame([0, 2, "put", [b"k", b"v" * 100_000]]), True)
    assert [e.method for e in events] == ["put"]
