"""Tokenising command lines: quotes and the shell's escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repl._parse import ParseError, escape_bytes, quote, tokenize, unescape


def values(line: str) -> list[bytes]:
    return [t.value for t in tokenize(line)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("get k", [b"get", b"k"], id="plain"),
        pytest.param("  put   a \t b  ", [b"put", b"a", b"b"], id="blanks"),
        pytest.param('put "a key" "a value"', [b"put", b"a key", b"a value"], id="quoted-spaces"),
        pytest.param('put k ""', [b"put", b"k", b""], id="empty-quoted"),
        pytest.param(r'put k "\x00\xff\x7F"', [b"put", b"k", b"\x00\xff\x7f"], id="hex"),
        pytest.param(r'put k "a\"b\\c"', [b"put", b"k", b'a"b\\c'], id="quote-backslash"),
        pytest.param(r'put k "\n\r\t"', [b"put", b"k", b"\n\r\t"], id="controls"),
        pytest.param(r"put k a\x00", [b"put", b"k", b"a\\x00"], id="unquoted-is-literal"),
        pytest.param("put k café", [b"put", b"k", "café".encode()], id="utf8"),
        pytest.param("", [], id="empty"),
    ],
)
def test_tokenize(line: str, expected: list[bytes]) -> None:
    assert values(line) == expected


@pytest.mark.parametrize(
    ("line", "column", "fragment"),
    [
        pytest.param('get "abc', 4, "unbalanced", id="unbalanced"),
        pytest.param(r'get "a\q"', 4, "unknown escape", id="unknown-escape"),
        pytest.param(r'get "\x4"', 4, "two hex digits", id="short-hex"),
        pytest.param(r'get "\xZZ"', 4, "two hex digits", id="bad-hex"),
        pytest.param('get "a"b', 4, "followed by a space", id="glued"),
        pytest.param('get a"b', 5, "a quote inside an argument", id="quote-inside-word"),
    ],
)
def test_strict_errors_name_the_column(line: str, column: int, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        tokenize(line)
    assert info.value.column == column
    assert fragment in str(info.value)


def test_lenient_mode_marks_problems_instead_of_raising() -> None:
    toks = tokenize('put "a\\q" "open', strict=False)
    assert [t.error is not None for t in toks] == [False, True, True]
    assert toks[2].closed is False
    assert toks[2].value == b"open"


def test_spans_cover_the_source() -> None:
    line = 'put  "a b"  c'
    for tok in tokenize(line):
        assert line[tok.start : tok.end] == tok.text


def test_surrogateescape_round_trips_raw_bytes() -> None:
    line = b"put k \xff\xfe".decode("utf-8", "surrogateescape")
    assert values(line)[2] == b"\xff\xfe"


def test_unescape_and_escape_examples() -> None:
    assert unescape(r"a\x00\n") == b"a\x00\n"
    assert escape_bytes(b'say "hi"\x00\xff') == r"say \"hi\"\x00\xff"
    assert escape_bytes("naïve ✓".encode()) == "naïve ✓"
    assert escape_bytes(b"\x7f\x1b") == r"\x7f\x1b"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(b"user:1", "user:1", id="bare"),
        pytest.param(b"a b", '"a b"', id="space"),
        pytest.param(b"", '""', id="empty"),
        pytest.param(b'"x', r'"\"x"', id="leading-quote"),
        pytest.param(b"\xff", r'"\xff"', id="binary"),
        pytest.param(b"back\\slash", r'"back\\slash"', id="backslash"),
    ],
)
def test_quote(value: bytes, shown: str) -> None:
    assert quote(value) == shown


@given(st.binary(max_size=64))
def test_quote_round_trips_any_bytes(value: bytes) -> None:
    toks = tokenize("get " + quote(value))
    assert len(toks) == 2
    assert toks[1].value == value


@given(st.lists(st.binary(min_size=0, max_size=16), min_size=1, max_size=5))
def test_a_line_of_quoted_arguments_round_trips(args: list[bytes]) -> None:
    line = " ".join(quote(a) for a in args)
    assert values(line) == args
