"""protocol.Connection, no sockets: every input whole, byte by byte, with trailing junk.

The three-way feed is h11's: the events must not depend on how the bytes were cut,
and bytes after a terminal event must change nothing. Hypothesis adds: any byte
string gives requests/rejections and at most one terminal Close, never an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    CLOSED,
    MAX_MSGID,
    NEED_DATA,
    Close,
    Connection,
    ErrorCode,
    ErrorInfo,
    Event,
    Reject,
    RemoteProtocolError,
    Request,
    encode_request,
    message_from_obj,
)
from protocol._resp_reader import INLINE_MAX
from protocol.connection import readable_msgid
from protocol.messages import requests_from_objs

MAX_FRAME = 4096


def frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def new() -> Connection:
    return Connection(max_frame=MAX_FRAME, http_port=7380)


def feed(chunks: Iterable[bytes]) -> list[Event]:
    conn = new()
    out: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        out.extend(conn.events())
    return out


def three_ways(data: bytes) -> list[Event]:
    """The events of `data` fed whole; asserts byte-by-byte gives the same."""
    whole = feed([data])
    assert repr(feed(data[i : i + 1] for i in range(len(data)))) == repr(whole)
    return whole


def ping(msgid: int) -> bytes:
    return encode_request(msgid, "ping", [])


# ---- binary


def test_binary_requests() -> None:
    data = ping(1) + encode_request(2, "put", [b"k", b"v"])
    assert three_ways(data) == [Request(1, "ping", []), Request(2, "put", [b"k", b"v"])]


def test_binary_trailing_partial_frame_waits() -> None:
    conn = new()
    conn.receive_data(ping(1) + ping(2)[:5])
    assert conn.next_event() == Request(1, "ping", [])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(ping(2)[5:])
    assert conn.next_event() == Request(2, "ping", [])


@pytest.mark.parametrize(
    ("bad", "msgid", "code"),
    [
        pytest.param(frame([0, 7, "ping", {}]), 7, ErrorCode.PROTOCOL_ERROR, id="params-map"),
        pytest.param(frame([0, 9, "ping"]), 9, ErrorCode.PROTOCOL_ERROR, id="three-fields"),
        pytest.param(frame([0, 9, 5, []]), 9, ErrorCode.PROTOCOL_ERROR, id="method-int"),
        pytest.param(frame([1, 7, None, True]), 0, ErrorCode.PROTOCOL_ERROR, id="response"),
        pytest.param(frame([0, -1, "ping", []]), 0, ErrorCode.PROTOCOL_ERROR, id="msgid-negative"),
        pytest.param(frame([False, 3, "ping", []]), 0, ErrorCode.PROTOCOL_ERROR, id="kind-bool"),
        pytest.param(frame({"a": 1}), 0, ErrorCode.PROTOCOL_ERROR, id="map"),
        pytest.param(struct.pack(">I", 1) + b"\xc1", 0, ErrorCode.PROTOCOL_ERROR, id="bad-msgpack"),
        pytest.param(struct.pack(">I", 0), 0, ErrorCode.PROTOCOL_ERROR, id="empty-frame"),
        pytest.param(struct.pack(">I", MAX_FRAME + 1), 0, ErrorCode.FRAME_TOO_LARGE, id="too-big"),
    ],
)
def test_binary_fatal_ends_the_connection(bad: bytes, msgid: int, code: ErrorCode) -> None:
    # requests before it are handed out, then one Close; nothing after it, ever
    events = three_ways(ping(1) + bad + ping(2) + encode_request(3, "put", [b"k", b"v"]))
    assert events[0] == Request(1, "ping", [])
    assert len(events) == 2
    close = events[1]
    assert type(close) is Close and close.error is not None
    assert close.error.code == code
    reply = msgpack.unpackb(close.data[4:])
    assert reply[:2] == [1, msgid] and reply[2][0] == code


def test_after_close_nothing_more_and_next_event_says_closed() -> None:
    conn = new()
    conn.receive_data(frame([0, 7, "ping", {}]))
    assert conn.ended
    assert type(conn.next_event()) is Close
    assert conn.next_event() is CLOSED
    conn.receive_data(ping(2))
    assert conn.next_event() is CLOSED


def test_binary_reply_rendering() -> None:
    conn = new()
    conn.receive_data(ping(5))
    request = conn.next_event()
    assert isinstance(request, Request)
    assert msgpack.unpackb(conn.send(request, "PONG", None)[4:]) == [1, 5, None, "PONG"]
    err = ErrorInfo.from_code(ErrorCode.BUSY, "later")
    assert msgpack.unpackb(conn.send(request, None, err)[4:]) == [
        1,
        5,
        [502, "BUSY", "later"],
        None,
    ]


@pytest.mark.parametrize("msgid", [0, 1, 127, 128, 255, 256, 0x1234, 0xFFFF, 0x10000, 0xFFFFFFFF])
@pytest.mark.parametrize("result", [True, False, None])
def test_prebuilt_scalar_replies_are_the_packers_bytes(msgid: int, result: Any) -> None:
    # The binary dialect writes True/False/nil replies from prebuilt bytes (its hot
    # path); they must be exactly what encode_response packs, for every msgid width.
    from protocol import encode_response
    from protocol.connection import BinaryDialect

    request = Request(msgid, "put", [b"k", b"v"])
    assert BinaryDialect().render(request, result, None) == encode_response(msgid, result)


@pytest.mark.parametrize(
    ("obj", "msgid"),
    [
        ([0, 7, "ping", {}], 7),
        ([0, 2**32, "ping", []], 0),
        ([1, 7, None, True], 0),
        ([True, 7], 0),
        ("x", 0),
        ([0], 0),
    ],
)
def test_readable_msgid(obj: Any, msgid: int) -> None:
    assert readable_msgid(obj) == msgid


# ---- sniffing


@pytest.mark.parametrize("first", [b"\t", b"\n", b"\r\n"])
def test_tab_cr_lf_first_are_text(first: bytes) -> None:
    # a blank first line is skipped, as Redis skips it; the tab is a blank
    assert three_ways(first + b"PING\r\n") == [Request(0, "ping", [b"PING"])]


def test_tab_first_is_binary_when_such_a_frame_fits() -> None:
    conn = Connection(max_frame=0x10000000)
    conn.receive_data(b"\t")
    assert conn.dialect is not None and conn.dialect.name == "binary"


def test_non_ascii_first_byte_is_fatal() -> None:
    events = three_ways(b"\xff\xfePING\r\n")
    assert len(events) == 1 and type(events[0]) is Close
    assert msgpack.unpackb(events[0].data[4:])[:2] == [1, 0]


def test_empty_input_waits() -> None:
    conn = new()
    conn.receive_data(b"")
    assert conn.dialect is None and conn.next_event() is NEED_DATA


# ---- text: the Redis protocol


def test_text_requests_and_replies() -> None:
    events = three_ways(b'SET k "a b"\r\nGET k\n*1\r\n$4\r\nPING\r\n')
    assert events == [
        Request(0, "set", [b"SET", b"k", b"a b"]),
        Request(0, "get", [b"GET", b"k"]),
        Request(0, "ping", [b"PING"]),
    ]
    conn = new()
    conn.receive_data(b"PING\r\n")
    request = conn.next_event()
    assert isinstance(request, Request)
    assert conn.dialect is not None and conn.dialect.name == "resp"
    assert conn.send(request, b"+PONG\r\n", None) == b"+PONG\r\n"  # the handler encodes
    busy = ErrorInfo.from_code(ErrorCode.BUSY, "x")
    assert conn.send(request, None, busy) == b"-BUSY x\r\n"


def test_text_unknown_command_is_a_request_the_server_answers() -> None:
    assert three_ways(b"FROB x\r\nGET k\r\n") == [
        Request(0, "unknown", [b"FROB", b"x"]),
        Request(0, "get", [b"GET", b"k"]),
    ]


@pytest.mark.parametrize(
    ("bad", "reply"),
    [
        pytest.param(
            b'GET "k', b"-ERR Protocol error: unbalanced quotes in request\r\n", id="quote"
        ),
        pytest.param(
            b"GET 'k'x", b"-ERR Protocol error: unbalanced quotes in request\r\n", id="sq"
        ),
        pytest.param(b"*1\r\n$x", b"-ERR Protocol error: invalid bulk length\r\n", id="bulk"),
    ],
)
def test_text_protocol_error_is_fatal(bad: bytes, reply: bytes) -> None:
    # Redis closes the connection after a protocol error: the requests before it are
    # handed out, then one Close, and nothing after it ever runs
    events = three_ways(b"PING\r\n" + bad + b"\r\nSET k v\r\n*1\r\n$4\r\nPING\r\n")
    assert events[0] == Request(0, "ping", [b"PING"])
    assert len(events) == 2
    close = events[1]
    assert type(close) is Close and close.error is not None
    assert close.error.code == ErrorCode.PROTOCOL_ERROR
    assert close.data == reply


def test_text_quit_is_terminal() -> None:
    events = three_ways(b"PING\r\nQUIT\r\nSET k v\r\n")
    assert events == [Request(0, "ping", [b"PING"]), Close(None, b"+OK\r\n")]


def test_text_line_too_long_is_fatal() -> None:
    events = three_ways(b"PING\r\n" + b"A" * (INLINE_MAX + 10) + b"\r\nSET k v\r\n")
    assert events[0] == Request(0, "ping", [b"PING"])
    assert len(events) == 2 and type(events[1]) is Close
    assert events[1].data == b"-ERR Protocol error: too big inline request\r\n"


def test_first_line_too_long_is_fatal_without_a_newline() -> None:
    conn = new()
    conn.receive_data(b"A" * (INLINE_MAX + 1))
    assert conn.ended and type(conn.next_event()) is Close


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n", id="get"),
        pytest.param(b"POST /kv/a?incr=1 HTTP/1.0\n\n", id="post-lf"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="h2-preface"),
    ],
)
def test_http_on_this_port_is_refused(first: bytes) -> None:
    events = three_ways(first)
    assert len(events) == 1 and type(events[0]) is Close
    assert events[0].data.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"port 7380" in events[0].data


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"get /kv/a HTTP/1.1", id="lower-case"),
        pytest.param(b"GET kv HTTP/1.1 x", id="four-words"),
        pytest.param(b"*1\r\n$3\r\nGET", id="multibulk"),
    ],
)
def test_commands_that_only_resemble_http_are_commands(line: bytes) -> None:
    events = three_ways(line + b"\r\n")
    assert len(events) == 1 and type(events[0]) is Request


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        pytest.param(b'GET "' + b"a" * 60_000, b"unbalanced quotes", id="unbalanced"),
        pytest.param(b'GET "' + b"\\" * 65_000, b"unbalanced quotes", id="backslashes"),
        pytest.param(b'GET "' + b'\\"' * 32_000, b"unbalanced quotes", id="escaped-quotes"),
        pytest.param(b'GET "' + b"\\" * 65_536, b"too big inline request", id="over-64k"),
    ],
)
def test_pathological_text_lines(line: bytes, reply: bytes) -> None:
    # answered in one linear pass (a backtracking tokenizer would never finish them)
    conn = new()
    conn.receive_data(b"PING\r\n" + line + b"\r\nPING\r\n")
    events = conn.events()
    assert events[0] == Request(0, "ping", [b"PING"])
    assert len(events) == 2 and type(events[1]) is Close
    assert reply in events[1].data


def test_inline_line_of_64k_backslashes_in_quotes_is_read() -> None:
    conn = new()
    value = b"\\" * 32_000
    conn.receive_data(b'SET k "' + value + b'"\r\n')
    assert conn.events() == [Request(0, "set", [b"SET", b"k", b"\\" * 16_000])]


# ---- properties


chunks_of = st.lists(st.integers(0, 400), max_size=6)
valid_frames = st.lists(
    st.sampled_from([ping(1), encode_request(2, "get", [b"k"]), frame([0, 3, "put", [b"k", 1]])]),
    max_size=4,
).map(b"".join)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    prev, out = 0, []
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def _check_stream(events: list[Event]) -> None:
    closes = [i for i, e in enumerate(events) if type(e) is Close]
    assert closes in ([], [len(events) - 1]), "at most one Close, and only last"
    for e in events:
        assert type(e) in (Request, Reject, Close)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.tuples(valid_frames, st.binary(max_size=60)).map(b"".join),
        st.tuples(
            st.sampled_from([b"PING\r\n", b'GET "x\r\n', b"\t", b"*2\r\n$3\r\nGET\r\n"]),
            st.binary(max_size=300),
        ).map(b"".join),
    ),
    chunks_of,
    st.binary(max_size=40),
)
def test_any_bytes_give_events_and_at_most_one_close(
    data: bytes, cuts: list[int], junk: bytes
) -> None:
    whole = feed([data])
    _check_stream(whole)
    assert repr(feed(_cut(data, cuts))) == repr(whole)
    if whole and type(whole[-1]) is Close:
        # the fatal state is final: trailing bytes change nothing
        assert repr(feed([data, junk])) == repr(whole)


def test_another_text_dialect_plugs_in_without_a_branch() -> None:
    class Shout:
        name = "shout"

        def __init__(self, max_frame: int, http_port: int | None) -> None:
            self.max_frame = max_frame

        def feed(self, data: bytes) -> list[Event]:
            return [Request(0, "ping", [data.strip()])]

        def render(self, request: Request, result: Any, error: ErrorInfo | None) -> bytes:
            return b"!" + bytes(result) + b"\n"

        def set_authenticated(self, on: bool) -> None:
            pass  # no limits before AUTH in this dialect

    conn = Connection(text=Shout)
    conn.receive_data(b"hey\r\n")
    request = conn.next_event()
    assert request == Request(0, "ping", [b"hey"])
    assert conn.dialect is not None and conn.dialect.name == "shout"
    assert conn.send(request, b"HEY", None) == b"!HEY\n"  # type: ignore[arg-type]
    conn.receive_data(b"\x00\x00\x00\x01")  # binary is decided by the first byte only
    assert conn.next_event() == Request(0, "ping", [b"\x00\x00\x00\x01"])


def test_a_long_first_line_trickling_in_byte_by_byte_is_read_in_linear_time() -> None:
    # Quadratic buffering (re-copying and re-searching the line per byte) would take
    # minutes here; the suite's timeout would fail it.
    conn = new()
    line = b"GET " + b"k" * (INLINE_MAX - 5)  # with its \r, the longest inline line
    for i in range(len(line)):
        conn.receive_data(line[i : i + 1])
    conn.receive_data(b"\r\n")
    assert conn.events() == [Request(0, "get", [b"GET", b"k" * (INLINE_MAX - 5)])]


def test_a_multibulk_trickling_in_byte_by_byte_is_read_in_linear_time() -> None:
    value = b"v" * 300_000
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n" % (len(value), value)
    conn = Connection(max_frame=1 << 20)
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
    assert conn.events() == [Request(0, "set", [b"SET", b"k", value])]


# ---- the hot paths against the general ones


def feed_receive(chunks: Iterable[bytes]) -> list[Event]:
    """Like `feed`, through Connection.receive (the server's one call per read)."""
    conn = new()
    out: list[Event] = []
    for chunk in chunks:
        out.extend(conn.receive(chunk))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.tuples(valid_frames, st.binary(max_size=60)).map(b"".join),
        st.tuples(
            st.sampled_from([b"PING\r\n", b"*2\r\n$3\r\nGET\r\n"]), st.binary(max_size=200)
        ).map(b"".join),
    ),
    chunks_of,
    st.binary(max_size=40),
)
def test_receive_is_receive_data_then_events(data: bytes, cuts: list[int], junk: bytes) -> None:
    for chunks in ([data], _cut(data, cuts), [data, junk]):
        assert repr(feed_receive(chunks)) == repr(feed(chunks))


def test_receive_after_next_event_hands_out_what_was_left() -> None:
    conn = new()
    conn.receive_data(ping(1) + ping(2))
    assert conn.next_event() == Request(1, "ping", [])
    assert conn.receive(ping(3)) == [Request(2, "ping", []), Request(3, "ping", [])]


msgpack_objs = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**33), 2**33)
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)
request_like = st.tuples(
    st.sampled_from([0, 1, 0.0, True, -1]),
    st.sampled_from([0, 7, MAX_MSGID, MAX_MSGID + 1, -1, "7", None]),
    st.sampled_from(["get", b"get", None, 3]),
    st.sampled_from([[], [b"k"], (), {}, None, b"k"]),
).map(list)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(msgpack_objs, request_like), max_size=6))
def test_requests_from_objs_is_message_from_obj(objs: list[Any]) -> None:
    # The server's batch check (BinaryDialect.feed) against the one-object rule.
    got = requests_from_objs(objs)
    expected: list[Any] = []
    for obj in objs:
        try:
            msg = message_from_obj(obj)
        except RemoteProtocolError:
            break
        if type(msg) is not Request:
            break
        expected.append(msg)
    assert got == expected
    assert all(type(r) is Request for r in got)
