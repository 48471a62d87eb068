"""RESP2/RESP3 reply encoding, checked by table and against a real redis-server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol._resp_writer import (
    ErrorReply,
    NullArray,
    RespWriter,
    Status,
    Verbatim,
    encode,
    encode_error,
    format_double,
)
from tests.protocol._redis_server import RedisConnection, redis_server

TABLE = [
    pytest.param("OK", b"+OK\r\n", b"+OK\r\n", id="simple"),
    pytest.param(Status(b"QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n", id="status-bytes"),
    pytest.param(ErrorReply("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n", id="error"),
    pytest.param(42, b":42\r\n", b":42\r\n", id="integer"),
    pytest.param(-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n", id="int64"),
    pytest.param(b"", b"$0\r\n\r\n", b"$0\r\n\r\n", id="empty-bulk"),
    pytest.param(b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n", id="binary-bulk"),
    pytest.param(None, b"$-1\r\n", b"_\r\n", id="null"),
    pytest.param(NullArray(), b"*-1\r\n", b"_\r\n", id="null-array"),
    pytest.param([], b"*0\r\n", b"*0\r\n", id="empty-array"),
    pytest.param([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n", id="array"),
    pytest.param({b"k": b"v"}, b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n", b"%1\r\n$1\r\nk\r\n$1\r\nv\r\n", id="map"),
    pytest.param(frozenset([b"x"]), b"*1\r\n$1\r\nx\r\n", b"~1\r\n$1\r\nx\r\n", id="set"),
    pytest.param(1.5, b"$3\r\n1.5\r\n", b",1.5\r\n", id="double"),
    pytest.param(float("inf"), b"$3\r\ninf\r\n", b",inf\r\n", id="inf"),
    pytest.param(float("-inf"), b"$4\r\n-inf\r\n", b",-inf\r\n", id="-inf"),
    pytest.param(True, b":1\r\n", b"#t\r\n", id="true"),
    pytest.param(False, b":0\r\n", b"#f\r\n", id="false"),
    pytest.param(Verbatim(b"# Server\r\n"), b"$10\r\n# Server\r\n\r\n", b"=14\r\ntxt:# Server\r\n\r\n", id="verbatim"),
    pytest.param([[b"0", [b"k"]]], b"*1\r\n*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n", b"*1\r\n*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n", id="nested"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "resp2", "resp3"), TABLE)
def test_table(value: Any, resp2: bytes, resp3: bytes) -> None:
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3
    w = RespWriter()
    assert w.send(value) == resp2
    w.proto = 3
    assert w.send(value) == resp3


def test_lines_never_break() -> None:
    assert encode_error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert encode("a\nb") == b"+a b\r\n"
    assert RespWriter().error("ERR x\ny") == b"-ERR x y\r\n"
    assert RespWriter().ok() == b"+OK\r\n"


def test_unknown_type_is_a_caller_bug() -> None:
    with pytest.raises(TypeError):
        encode(object())


def test_bytes_like_are_bulk() -> None:
    assert encode(bytearray(b"ab")) == encode(memoryview(b"ab")) == b"$2\r\nab\r\n"


def test_double_formatting() -> None:
    assert format_double(0.1) == b"0.10000000000000001"
    assert format_double(1e20) == b"1e+20"
    assert format_double(3.0) == b"3"
    assert format_double(math.nan) == b"nan"
    assert format_double(-0.0) == b"-0"  # C's %.17g


# -- against a real redis-server ---------------------------------------------------------


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as port:
        conns = (RedisConnection(port), RedisConnection(port))
        assert conns[1].call([b"HELLO", b"3"]).startswith(b"%")
        yield conns
        for c in conns:
            c.close()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.floats(allow_nan=False))
def test_doubles_as_redis_sends_them(
    redis: tuple[RedisConnection, RedisConnection], value: float
) -> None:
    r2, r3 = redis
    value = value or 0.0  # a small zset stores -0.0 as the integer 0 (listpack), not a reply rule
    assert r2.call([b"ZADD", b"z", repr(value).encode(), b"m"]).startswith(b":")
    assert r2.call([b"ZSCORE", b"z", b"m"]) == encode(value, 2)
    assert r3.call([b"ZSCORE", b"z", b"m"]) == encode(value, 3)


def test_nulls_and_maps_as_redis_sends_them(redis: tuple[RedisConnection, RedisConnection]) -> None:
    r2, r3 = redis
    assert r2.call([b"GET", b"missing"]) == encode(None, 2)
    assert r3.call([b"GET", b"missing"]) == encode(None, 3)
    assert r2.call([b"CONFIG", b"GET", b"maxmemory"]) == encode([b"maxmemory", b"0"], 2)
    assert r3.call([b"CONFIG", b"GET", b"maxmemory"]) == encode({b"maxmemory": b"0"}, 3)
    for conn, proto in ((r2, 2), (r3, 3)):
        assert conn.call([b"SET", b"w", b"1"]) == b"+OK\r\n"
        assert conn.call([b"WATCH", b"w"]) == b"+OK\r\n"
        assert r2.call([b"SET", b"w", b"2"]) == b"+OK\r\n"  # touched from elsewhere
        assert conn.call([b"MULTI"]) == b"+OK\r\n"
        assert conn.call([b"GET", b"w"]) == b"+QUEUED\r\n"
        assert conn.call([b"EXEC"]) == encode(NullArray(), proto)


def test_verbatim_as_redis_sends_it(redis: tuple[RedisConnection, RedisConnection]) -> None:
    r2, r3 = redis
    text2 = r2.call([b"INFO", b"keyspace"])
    body = text2[text2.index(b"\r\n") + 2 : -2]
    assert text2 == encode(Verbatim(body), 2)
    assert r3.call([b"INFO", b"keyspace"]) == encode(Verbatim(body), 3)
