"""Inline commands of the Redis protocol (`nc`, telnet), through protocol.Connection.

Inline lines are split as Redis's sdssplitargs splits them (protocol/_resp_inline.py's
`split_inline`, compared with a port of the C function and a real redis-server in
test_resp_reader.py). Here: what a connection that starts with text hands out, the
quoting table of docs/redis.md, the fatal errors, and the HTTP sniff of the first line.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import Close, Connection, ErrorCode, Event, Request, http_refusal, looks_like_http
from protocol._resp_inline import split_inline
from protocol._resp_reader import INLINE_MAX


def feed(data: bytes) -> list[Event]:
    """The events of `data` fed whole; asserts byte by byte gives the same."""
    whole = Connection(http_port=7380)
    whole.receive_data(data)
    events = whole.events()
    trickle = Connection(http_port=7380)
    for i in range(len(data)):
        trickle.receive_data(data[i : i + 1])
    assert repr(trickle.events()) == repr(events)
    return events


def argv_of(line: bytes) -> list[bytes]:
    events = feed(line + b"\r\n")
    assert len(events) == 1 and type(events[0]) is Request, events
    return list(events[0].params)


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        pytest.param(b"SET k v", [b"SET", b"k", b"v"], id="bare"),
        pytest.param(b"  SET \t k \x0b\x0c v ", [b"SET", b"k", b"v"], id="blanks"),
        pytest.param(b"SET a\x0bb v", [b"SET", b"a\x0bb", b"v"], id="vt-inside-a-word"),
        pytest.param(b'SET k "hello world"', [b"SET", b"k", b"hello world"], id="double"),
        pytest.param(b'SET k ""', [b"SET", b"k", b""], id="empty"),
        pytest.param(rb'SET k "\n\r\t\b\a"', [b"SET", b"k", b"\n\r\t\x08\x07"], id="escapes"),
        pytest.param(rb'SET k "\x00\xff\x41"', [b"SET", b"k", b"\x00\xffA"], id="hex"),
        pytest.param(rb'SET k "\xg1"', [b"SET", b"k", b"xg1"], id="hex-without-digits"),
        pytest.param(rb'SET k "a\"b\\c\q"', [b"SET", b"k", b'a"b\\cq'], id="any-escaped"),
        pytest.param(rb"SET k 'it\'s \n'", [b"SET", b"k", b"it's \\n"], id="single"),
        pytest.param(b'SET k a"b c"', [b"SET", b"k", b"ab c"], id="quote-opens-mid-word"),
        pytest.param(rb"SET k a\x41", [b"SET", b"k", b"a\\x41"], id="bare-backslash"),
        pytest.param("SET k café".encode(), [b"SET", b"k", "café".encode()], id="utf8"),
    ],
)
def test_quoting(line: bytes, argv: list[bytes]) -> None:
    assert argv_of(line) == argv


def test_command_names_are_case_insensitive_and_lines_end_at_lf() -> None:
    events = feed(b"set k v\nGeT k\r\n\r\n\n   \r\nping\n")
    assert [(e.method, e.params) for e in events if type(e) is Request] == [
        ("set", [b"set", b"k", b"v"]),
        ("get", [b"GeT", b"k"]),
        ("ping", [b"ping"]),
    ]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'GET "k', id="open-double"),
        pytest.param(b"GET 'k", id="open-single"),
        pytest.param(b'GET "k"x', id="text-after-closing-quote"),
        pytest.param(b"GET 'k'x", id="text-after-closing-single"),
        pytest.param(b'GET "k\\', id="lone-backslash"),
    ],
)
def test_unbalanced_quotes_are_fatal(line: bytes) -> None:
    events = feed(b"PING\r\n" + line + b"\r\nSET k v\r\n")
    assert events[0] == Request(0, "ping", [b"PING"])
    assert len(events) == 2
    close = events[1]
    assert type(close) is Close and close.error is not None
    assert close.error.code == ErrorCode.PROTOCOL_ERROR
    assert close.data == b"-ERR Protocol error: unbalanced quotes in request\r\n"


def test_the_inline_limit_is_64_kib() -> None:
    ok = b"ECHO " + b"x" * (INLINE_MAX - 6)  # with its \r: 65,536 bytes before \n
    assert argv_of(ok) == [b"ECHO", b"x" * (INLINE_MAX - 6)]
    events = feed(ok + b"x\r\nPING\r\n")
    assert len(events) == 1 and type(events[0]) is Close
    assert events[0].data == b"-ERR Protocol error: too big inline request\r\n"


# redis-cli prints a bulk reply at a terminal with sdscatrepr; what it prints, pasted
# back on an inline line, is the same bytes (the quoting docs/redis.md recommends).
_REPR = {0x5C: b"\\\\", 0x22: b'\\"', 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
_REPR |= {0x07: b"\\a", 0x08: b"\\b"}


def sdscatrepr(value: bytes) -> bytes:
    out = bytearray(b'"')
    for b in value:
        if b in _REPR:
            out += _REPR[b]
        elif 0x20 <= b < 0x7F:
            out.append(b)
        else:
            out += b"\\x%02x" % b
    return bytes(out + b'"')


@given(st.lists(st.binary(max_size=30), min_size=1, max_size=6))
def test_sdscatrepr_quoted_arguments_round_trip(argv: list[bytes]) -> None:
    line = b" ".join(sdscatrepr(a) for a in argv)
    assert split_inline(line) == argv
    assert argv_of(b"ECHO " + line) == [b"ECHO", *argv]


# ---- HTTP on this port


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"GET / HTTP/1.1\r\n", True, id="get"),
        pytest.param(b"GET /kv/a HTTP/1.0", True, id="no-newline"),
        pytest.param(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n", True, id="with-headers"),
        pytest.param(b"HEAD /health HTTP/2\r\n", True, id="http2"),
        pytest.param(b"PRI * HTTP/2.0\r\n", True, id="h2-preface"),
        pytest.param(b"GET k\r\n", False, id="inline-get"),
        pytest.param(b"set /x HTTP/1.1\r\n", False, id="lowercase-inline"),
        pytest.param(b"SET k v\r\n", False, id="inline-set"),
        pytest.param(b"GET /x HTTP/1.1 extra\r\n", False, id="extra-token"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_looks_like_http(line: bytes, expected: bool) -> None:
    assert looks_like_http(line) is expected


def test_http_refusal() -> None:
    reply = http_refusal(7380)
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"7380" in body and body.count(b"\n") == 1


def test_an_http_request_line_gets_the_refusal_and_nothing_runs() -> None:
    events = feed(b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\nSET k v\r\n")
    assert len(events) == 1 and type(events[0]) is Close
    assert events[0].data == http_refusal(7380)
    assert events[0].error is not None and events[0].error.code == ErrorCode.PROTOCOL_ERROR


def test_only_the_first_line_is_sniffed() -> None:
    events = feed(b"PING\r\nGET /kv/a HTTP/1.1\r\n")
    assert [type(e) for e in events] == [Request, Request]
