"""Inline text mode: line splitting, quoting tables, command mapping, replies, HTTP sniffing."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import (
    INLINE_COMMANDS,
    ErrorCode,
    ErrorInfo,
    InlineDecoder,
    ProtocolError,
    RemoteProtocolError,
    format_inline_error,
    format_inline_reply,
    http_refusal,
    inline_to_request,
    looks_like_http,
    quote_arg,
    split_args,
    validate_params,
)

SESSION = b'PUT k v\r\nGET k\n\n  \r\nPUT "a b" "x\\ty\\x00"\r\nMGET a b c\n'
SESSION_ARGV = [
    [b"PUT", b"k", b"v"],
    [b"GET", b"k"],
    [b"PUT", b"a b", b"x\ty\x00"],
    [b"MGET", b"a", b"b", b"c"],
]


def test_decoder_whole() -> None:
    assert InlineDecoder().feed(SESSION) == SESSION_ARGV


def test_decoder_byte_by_byte() -> None:
    d = InlineDecoder()
    got: list[list[bytes]] = []
    for i in range(len(SESSION)):
        got += d.feed(SESSION[i : i + 1])
    assert got == SESSION_ARGV


def test_decoder_trailing_partial_line() -> None:
    d = InlineDecoder()
    assert d.feed(SESSION + b"GET pa") == SESSION_ARGV
    assert d.feed(b"rtial\r\n") == [[b"GET", b"partial"]]


def test_decoder_trailing_junk_line_is_an_error_for_that_line_only() -> None:
    d = InlineDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        d.feed(SESSION + b'GET "unclosed\nPING\n')
    assert info.value.messages == SESSION_ARGV
    assert d.feed(b"") == [[b"PING"]]


def test_decoder_line_too_long_kills_it() -> None:
    d = InlineDecoder(max_line=16)
    with pytest.raises(RemoteProtocolError):
        d.feed(b"GET " + b"x" * 20)
    with pytest.raises(RemoteProtocolError):
        d.feed(b"\n")


def test_decoder_failed_flag() -> None:
    d = InlineDecoder(max_line=16)
    assert d.failed is False
    with pytest.raises(RemoteProtocolError):
        d.feed(b'GET "unclosed\n')
    assert d.failed is False  # a malformed line fails alone
    with pytest.raises(RemoteProtocolError):
        d.feed(b"GET " + b"x" * 20)
    assert d.failed is True
    with pytest.raises(AttributeError):
        d.failed = False  # type: ignore[misc]


def test_decoder_max_line_allows_crlf() -> None:
    assert InlineDecoder(max_line=5).feed(b"GET k\r\n") == [[b"GET", b"k"]]


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        pytest.param(b"", [], id="empty"),
        pytest.param(b"  \t ", [], id="blank"),
        pytest.param(b"GET k", [b"GET", b"k"], id="plain"),
        pytest.param(b"  GET \t k  ", [b"GET", b"k"], id="extra-spaces"),
        pytest.param(b'PUT "two words" v', [b"PUT", b"two words", b"v"], id="quoted-space"),
        pytest.param(b'PUT "" v', [b"PUT", b"", b"v"], id="empty-quoted"),
        pytest.param(b'"a\\"b"', [b'a"b'], id="escaped-quote"),
        pytest.param(b'"a\\\\b"', [b"a\\b"], id="escaped-backslash"),
        pytest.param(b'"\\n\\r\\t"', [b"\n\r\t"], id="control-escapes"),
        pytest.param(b'"\\x00\\xff\\xAb"', [b"\x00\xff\xab"], id="hex-escapes"),
        pytest.param(b"a\\b", [b"a\\b"], id="bare-backslash-is-literal"),
        pytest.param("ключ".encode(), ["ключ".encode()], id="utf8-bare"),
    ],
)
def test_split_args(line: bytes, argv: list[bytes]) -> None:
    assert split_args(line) == argv


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'GET "k', id="unbalanced"),
        pytest.param(b'GET "k"x', id="glued-after-quote"),
        pytest.param(b'GET k"x"', id="quote-inside-bare"),
        pytest.param(b'GET "\\q"', id="unknown-escape"),
        pytest.param(b'GET "\\x4"', id="short-hex"),
        pytest.param(b'GET "\\"', id="escaped-closing-quote"),
    ],
)
def test_split_args_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        split_args(line)
    assert info.value.code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        pytest.param(b"plain", b"plain", id="plain"),
        pytest.param(b"", b'""', id="empty"),
        pytest.param(b"a b", b'"a b"', id="space"),
        pytest.param(b'say "hi"', b'"say \\"hi\\""', id="quotes"),
        pytest.param(b"a\\b", b'"a\\\\b"', id="backslash"),
        pytest.param(b"\x00\n\r\t\x7f\xff", b'"\\x00\\n\\r\\t\\x7f\\xff"', id="binary"),
        pytest.param("é", b'"\\xc3\\xa9"', id="utf8-str"),
    ],
)
def test_quote_arg(value: bytes | str, printed: bytes) -> None:
    assert quote_arg(value) == printed
    raw = value.encode() if isinstance(value, str) else value
    assert split_args(b"PUT k " + printed) == [b"PUT", b"k", raw]


def test_quote_arg_every_byte_round_trips() -> None:
    every = bytes(range(256))
    assert split_args(quote_arg(every)) == [every]
    for b in range(256):
        assert split_args(quote_arg(bytes([b]))) == [bytes([b])]


@pytest.mark.parametrize(
    ("argv", "method", "params"),
    [
        pytest.param([b"ping"], "ping", (), id="ping"),
        pytest.param([b"PING", b"hi"], "ping", (b"hi",), id="ping-msg"),
        pytest.param([b"Auth", b"tok"], "auth", (b"tok",), id="auth"),
        pytest.param([b"HELLO"], "hello", (), id="hello"),
        pytest.param([b"get", b"k"], "get", (b"k",), id="get"),
        pytest.param([b"PUT", b"k", b"v"], "put", (b"k", b"v"), id="put"),
        pytest.param(
            [b"put", b"k", b"v", b"ttl", b"2.5"], "put", (b"k", b"v", {"ttl": 2.5}), id="put-ttl"
        ),
        pytest.param([b"DEL", b"k"], "delete", (b"k",), id="del"),
        pytest.param([b"delete", b"k"], "delete", (b"k",), id="delete"),
        pytest.param([b"EXISTS", b"k"], "exists", (b"k",), id="exists"),
        pytest.param([b"TTL", b"k"], "ttl", (b"k",), id="ttl"),
        pytest.param([b"MGET", b"a", b"b"], "mget", ([b"a", b"b"],), id="mget"),
        pytest.param(
            [b"MPUT", b"a", b"1", b"b", b"2"], "mput", ([[b"a", b"1"], [b"b", b"2"]],), id="mput"
        ),
        pytest.param([b"SCAN"], "scan", ({},), id="scan"),
        pytest.param(
            [b"SCAN", b"p", b"", b"5"], "scan", ({"prefix": b"p", "count": 5},), id="scan-count"
        ),
        pytest.param(
            [b"SCAN", b"p", b"p3"], "scan", ({"prefix": b"p", "cursor": b"p3"},), id="scan-cursor"
        ),
        pytest.param([b"STATS"], "stats", (), id="stats"),
        pytest.param([b"MERGE"], "merge", (), id="merge"),
        pytest.param([b"SYNC"], "sync", (), id="sync"),
        pytest.param([b"QUIT"], "quit", (), id="quit"),
    ],
)
def test_inline_to_request(argv: list[bytes], method: str, params: tuple[Any, ...]) -> None:
    assert inline_to_request(argv) == (method, params)
    if method != "quit":
        validate_params(method, params)  # every inline command is a valid wire call


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param([b"FLUSHALL"], ErrorCode.UNKNOWN_METHOD, id="unknown"),
        pytest.param([b"\xff"], ErrorCode.UNKNOWN_METHOD, id="binary-name"),
        pytest.param([], ErrorCode.UNKNOWN_METHOD, id="empty"),
        pytest.param([b"GET"], ErrorCode.INVALID_PARAMS, id="get-no-key"),
        pytest.param([b"GET", b"a", b"b"], ErrorCode.INVALID_PARAMS, id="get-two"),
        pytest.param([b"PUT", b"k", b"v", b"EX", b"5"], ErrorCode.INVALID_PARAMS, id="put-ex"),
        pytest.param([b"PUT", b"k", b"v", b"TTL", b"soon"], ErrorCode.INVALID_PARAMS, id="ttl-nan"),
        pytest.param([b"PUT", b"k", b"v", b"TTL"], ErrorCode.INVALID_PARAMS, id="ttl-missing"),
        pytest.param([b"MPUT", b"a", b"1", b"b"], ErrorCode.INVALID_PARAMS, id="mput-odd"),
        pytest.param([b"MGET"], ErrorCode.INVALID_PARAMS, id="mget-none"),
        pytest.param([b"SCAN", b"p", b"", b"x"], ErrorCode.INVALID_PARAMS, id="scan-count"),
        pytest.param([b"STATS", b"x"], ErrorCode.INVALID_PARAMS, id="stats-arg"),
    ],
)
def test_inline_to_request_errors(argv: list[bytes], code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        inline_to_request(argv)
    assert info.value.code is code


def test_every_inline_command_is_listed() -> None:
    assert set(INLINE_COMMANDS) == {
        "PING", "AUTH", "HELLO", "GET", "PUT", "DEL", "DELETE", "EXISTS", "TTL",
        "MGET", "MPUT", "SCAN", "STATS", "MERGE", "SYNC", "QUIT",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("method", "result", "reply"),
    [
        pytest.param("put", True, b"+OK\n", id="put"),
        pytest.param("mput", True, b"+OK\n", id="mput"),
        pytest.param("sync", True, b"+OK\n", id="sync"),
        pytest.param("auth", True, b"+OK\n", id="auth"),
        pytest.param("ping", "PONG", b"+PONG\n", id="ping"),
        pytest.param("ping", b"hi there", b'$"hi there"\n', id="ping-payload"),
        pytest.param("get", b"v", b"$v\n", id="get"),
        pytest.param("get", b"a\nb", b'$"a\\nb"\n', id="get-newline"),
        pytest.param("get", None, b"_\n", id="get-nil"),
        pytest.param("delete", True, b":1\n", id="delete-true"),
        pytest.param("exists", False, b":0\n", id="exists-false"),
        pytest.param("ttl", 4.5, b",4.5\n", id="ttl-float"),
        pytest.param("ttl", -2, b":-2\n", id="ttl-missing"),
        pytest.param("mget", [b"1", None], b"*2\n$1\n_\n", id="mget"),
        pytest.param("scan", [None, []], b"*2\n_\n*0\n", id="scan-done"),
        pytest.param("scan", [b"b", [b"a", b"b"]], b"*2\n$b\n*2\n$a\n$b\n", id="scan-page"),
        pytest.param(
            "stats",
            {"keys": 2, "sync": "always", "recovery": {"truncated_bytes": 0}},
            b"%3\n$keys\n:2\n$sync\n$always\n$recovery\n%1\n$truncated_bytes\n:0\n",
            id="stats-nested",
        ),
    ],
)
def test_format_inline_reply(method: str, result: Any, reply: bytes) -> None:
    assert format_inline_reply(method, result) == reply


def test_reply_values_paste_back_as_arguments() -> None:
    for value in [b"", b"plain", b"two words", b'"q"', b"\x00\xff\\", "naïve".encode()]:
        line = format_inline_reply("get", value)
        assert line.startswith(b"$") and line.count(b"\n") == 1
        assert split_args(b"PUT k " + line[1:-1]) == [b"PUT", b"k", value]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        pytest.param(
            ErrorInfo.from_code(ErrorCode.AUTH_REQUIRED, "send AUTH token first"),
            b"-ERR AUTH_REQUIRED send AUTH token first\n",
            id="plain",
        ),
        pytest.param(
            ErrorInfo.from_code(ErrorCode.INTERNAL, "two\nlines"),
            b"-ERR INTERNAL two lines\n",
            id="multiline",
        ),
        pytest.param(ErrorInfo.from_code(ErrorCode.BUSY), b"-ERR BUSY\n", id="no-message"),
    ],
)
def test_format_inline_error(error: ErrorInfo, line: bytes) -> None:
    assert format_inline_error(error) == line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"GET / HTTP/1.1\r\n", True, id="get"),
        pytest.param(b"GET /kv/a HTTP/1.0", True, id="no-newline"),
        pytest.param(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n", True, id="with-headers"),
        pytest.param(b"HEAD /health HTTP/2\r\n", True, id="http2"),
        pytest.param(b"PRI * HTTP/2.0\r\n", True, id="h2-preface"),
        pytest.param(b"GET k\r\n", False, id="inline-get"),
        pytest.param(b"put /x HTTP/1.1\r\n", False, id="lowercase-inline"),
        pytest.param(b"PUT k v\r\n", False, id="inline-put"),
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


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param(b'GET "' + b"a" * 1_000_000, "unbalanced", id="unbalanced-quote-1MiB"),
        pytest.param(b'GET "' + b"\\" * 65_536, "unbalanced", id="unbalanced-64KiB-backslashes"),
        pytest.param(b'GET "' + b'\\"' * 100_000, "unbalanced", id="escaped-quotes"),
        pytest.param(b"GET " + b"\\" * 65_537 + b'"', "quote inside", id="bare-backslashes"),
    ],
)
def test_pathological_lines_are_rejected_in_linear_time(line: bytes, error: str) -> None:
    # A backtracking tokenizer never finishes these (the suite's timeout would fail it).
    with pytest.raises(ProtocolError, match=error):
        split_args(line)


def test_long_escaped_argument_is_read_in_one_pass() -> None:
    assert split_args(b'SET "' + b"\\\\" * 65_536 + b'"') == [b"SET", b"\\" * 65_536]
    assert split_args(b"GET " + b"\\" * 65_536) == [b"GET", b"\\" * 65_536]
