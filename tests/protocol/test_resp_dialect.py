"""The Redis dialect of protocol.Connection, sans-IO: sniffing, events, fatal state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ErrorCode, ErrorInfo, Request
from protocol.connection import CLOSED, NEED_DATA, Close, Connection, Event
from protocol.resp_dialect import RespDialect, error_line

STREAM = (
    b"*1\r\n$4\r\nPING\r\n"
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
    b"GET k\r\n"  # inline commands are read too, once the connection speaks RESP
    b"*2\r\n$7\r\nNOSUCH!\r\n$1\r\nx\r\n"
)
EXPECTED = [
    ("ping", [b"PING"]),
    ("set", [b"SET", b"k", b"hello"]),
    ("get", [b"GET", b"k"]),
    ("unknown", [b"NOSUCH!", b"x"]),
]


def _requests(events: list[Event]) -> list[tuple[str, list[bytes]]]:
    out = []
    for e in events:
        assert type(e) is Request and e.msgid == 0
        out.append((e.method, list(e.params)))
    return out


@pytest.mark.parametrize("use_hiredis", [False, None], ids=["python", "default"])
def test_whole_and_byte_by_byte(use_hiredis: bool | None) -> None:
    whole = RespDialect(use_hiredis=use_hiredis)
    assert _requests(whole.feed(STREAM)) == EXPECTED
    trickle = RespDialect(use_hiredis=use_hiredis)
    events: list[Event] = []
    for i in range(len(STREAM)):
        events += trickle.feed(STREAM[i : i + 1])
    assert _requests(events) == EXPECTED


@pytest.mark.parametrize("first", [b"*1\r\n$4\r\nPING\r\n", b"PING\r\n", b"\r\nPING\r\n"])
def test_every_text_first_byte_picks_resp(first: bytes) -> None:
    conn = Connection()
    conn.receive_data(first)
    assert conn.dialect is not None and conn.dialect.name == "resp"
    assert _requests(conn.events()) == [("ping", [b"PING"])]


def test_quit_is_terminal_and_nothing_after_it_runs() -> None:
    conn = Connection()
    conn.receive_data(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
    events = conn.events()
    assert [type(e) for e in events] == [Request, Close]
    assert events[1] == Close(None, b"+OK\r\n")
    conn.receive_data(b"*1\r\n$4\r\nPING\r\n")
    assert conn.next_event() is CLOSED


def test_protocol_error_answers_redis_text_then_closes() -> None:
    conn = Connection()
    conn.receive_data(b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n")
    events = conn.events()
    assert _requests(events[:1]) == [("ping", [b"PING"])]
    close = events[1]
    assert type(close) is Close and close.error is not None
    assert close.error.code == ErrorCode.PROTOCOL_ERROR
    assert close.data == b"-ERR Protocol error: invalid bulk length\r\n"
    assert conn.next_event() is CLOSED


def test_render_passes_encoded_replies_and_maps_refusals() -> None:
    d = RespDialect()
    req = Request(0, "get", [b"GET", b"k"])
    assert d.render(req, b"$1\r\nv\r\n", None) == b"$1\r\nv\r\n"
    busy = ErrorInfo.from_code(ErrorCode.BUSY, "writer queue full; retry later")
    assert d.render(req, None, busy) == b"-BUSY writer queue full; retry later\r\n"
    full = ErrorInfo.from_code(ErrorCode.STORE_FULL, "max_keys")
    assert error_line(full) == b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    ro = ErrorInfo.from_code(ErrorCode.READ_ONLY, "disk full")
    assert error_line(ro) == b"-READONLY disk full\r\n"
    own = ErrorInfo(int(ErrorCode.INVALID_PARAMS), "WRONGTYPE", "WRONGTYPE no\r\nline")
    assert error_line(own) == b"-WRONGTYPE no  line\r\n"


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_any_bytes_give_events_never_an_exception(data: bytes, step: int) -> None:
    conn = Connection()
    conn.receive_data(b"*")
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])
    events = conn.events()
    for e in events[:-1]:
        assert type(e) is Request
    if events and type(events[-1]) is Close:
        assert conn.next_event() is CLOSED
    else:
        assert conn.next_event() is NEED_DATA


def test_command_names_are_resolved_through_a_bounded_cache() -> None:
    from protocol import resp_dialect

    d = RespDialect(use_hiredis=False)
    spellings = [
        "".join(c.upper() if (i >> j) & 1 else c for j, c in enumerate("pexpireat"))
        for i in range(1 << 9)
    ] * 3  # 512 case mixes of one name, each sent three times
    wire = b"".join(b"*1\r\n$9\r\n%s\r\n" % s.encode() for s in spellings)
    events = d.feed(wire + b"*1\r\n$5\r\nNOPEX\r\n" + b"*1\r\n$4\r\nQuIt\r\n")
    names = [e.method for e in events if isinstance(e, Request)]
    assert names == ["pexpireat"] * len(spellings) + ["unknown"]
    assert isinstance(events[-1], Close), "QUIT in any case ends the connection"
    assert len(resp_dialect._NAMES) <= resp_dialect._MAX_NAMES
    assert b"NOPEX" not in resp_dialect._NAMES, "unknown names are never cached"
