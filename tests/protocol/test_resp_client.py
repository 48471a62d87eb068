"""protocol/_resp_client.py: the reply reader, fed whole, byte by byte, and with junk.

Replies are produced by the project's own reply writer (`_resp_writer.encode`), so
reading what the writer wrote is a round trip through both modules.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol._resp_client import (
    MAX_DEPTH,
    NEED_DATA,
    ErrorReply,
    ReplyReader,
    encode_command,
)
from protocol._resp_writer import ErrorReply as WriterError
from protocol._resp_writer import Status, encode
from protocol.errors import RemoteProtocolError


def read_all(data: bytes, step: int | None = None) -> list[Any]:
    reader = ReplyReader()
    out: list[Any] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.next_reply()) is not NEED_DATA:
            out.append(reply)
    return out


CASES = [
    pytest.param(b"+OK\r\n", ["OK"], id="status"),
    pytest.param(b"-ERR no such key\r\n", [ErrorReply("ERR", "no such key")], id="error"),
    pytest.param(b":-42\r\n", [-42], id="integer"),
    pytest.param(b"$5\r\nhe\r\no\r\n", [b"he\r\no"], id="bulk-with-crlf"),
    pytest.param(b"$0\r\n\r\n", [b""], id="empty-bulk"),
    pytest.param(b"$-1\r\n*-1\r\n_\r\n", [None, None, None], id="nulls"),
    pytest.param(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [[b"a", [1]]], id="nested"),
    pytest.param(b"*0\r\n", [[]], id="empty-array"),
    pytest.param(b"%1\r\n+k\r\n,1.5\r\n", [{"k": 1.5}], id="map-double"),
    pytest.param(b"#t\r\n#f\r\n", [True, False], id="booleans"),
    pytest.param(b"=7\r\ntxt:abc\r\n", [b"abc"], id="verbatim"),
    pytest.param(b"(12345678901234567890\r\n", [12345678901234567890], id="bignum"),
    pytest.param(b"~2\r\n:1\r\n:2\r\n", [[1, 2]], id="set"),
    pytest.param(b"|1\r\n+a\r\n+b\r\n:7\r\n", [7], id="attribute-dropped"),
    pytest.param(b",inf\r\n,-inf\r\n", [float("inf"), float("-inf")], id="infinities"),
    pytest.param(b"!9\r\nERR boom!\r\n", [ErrorReply("ERR", "boom!")], id="bulk-error"),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_whole_and_byte_by_byte(data: bytes, expected: list[Any]) -> None:
    assert read_all(data) == expected
    assert read_all(data, step=1) == expected
    assert read_all(data, step=3) == expected


def test_incomplete_reply_waits() -> None:
    reader = ReplyReader()
    reader.feed(b"*2\r\n$3\r\nab")
    assert reader.next_reply() is NEED_DATA
    reader.feed(b"c\r\n:1")
    assert reader.next_reply() is NEED_DATA
    reader.feed(b"\r\n+next\r\n")
    assert reader.next_reply() == [b"abc", 1]
    assert reader.next_reply() == "next"
    assert reader.next_reply() is NEED_DATA


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"?what\r\n", id="unknown-type"),
        pytest.param(b":12x\r\n", id="bad-integer"),
        pytest.param(b"$3\r\nabcd\r\n", id="bulk-without-crlf"),
        pytest.param(b"$-2\r\n", id="negative-bulk"),
        pytest.param(b"*-3\r\n", id="negative-array"),
        pytest.param(b"#x\r\n", id="bad-boolean"),
        pytest.param(b",one\r\n", id="bad-double"),
        pytest.param(b"_x\r\n", id="null-with-payload"),
        pytest.param(b"=2\r\nab\r\n", id="verbatim-without-format"),
        pytest.param(b"*1\r\n" * (MAX_DEPTH + 1) + b":1\r\n", id="too-deep"),
        pytest.param(b"+" + b"x" * (70 * 1024), id="endless-line"),
    ],
)
def test_malformed_is_terminal(data: bytes) -> None:
    reader = ReplyReader()
    reader.feed(b"+before\r\n" + data)
    assert reader.next_reply() == "before"
    with pytest.raises(RemoteProtocolError):
        reader.next_reply()
    with pytest.raises(RemoteProtocolError):  # broken for good
        reader.feed(b"+OK\r\n")
    with pytest.raises(RemoteProtocolError):
        reader.next_reply()


def test_large_bulk_in_chunks() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    assert read_all(encode(value), step=65536) == [value]


def test_encode_command_is_what_redis_reads() -> None:
    from protocol._resp_reader import RespReader

    argv = [b"SET", b"k\r\n", b"", b"\x00\xff"]
    reader = RespReader()
    reader.feed(encode_command(argv))
    assert reader.next_command() == argv


def test_error_reply_parse() -> None:
    assert ErrorReply.parse(b"WRONGTYPE Operation against a key") == ErrorReply(
        "WRONGTYPE", "Operation against a key"
    )
    assert str(ErrorReply.parse(b"NOAUTH")) == "NOAUTH"


# values the reply writer can encode and this reader gives back unchanged (RESP3)
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary(max_size=40)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=1, max_value=7))
def test_round_trip_through_the_writer(value: Any, step: int) -> None:
    data = encode(value, 3)
    assert read_all(data) == [value]
    assert read_all(data, step=step) == [value]


def test_writer_wrappers() -> None:
    data = encode(Status(b"QUEUED")) + encode(WriterError("ERR x")) + encode([b"a", 1], 2)
    assert read_all(data) == ["QUEUED", ErrorReply("ERR", "x"), [b"a", 1]]
