"""The RESP request reader: multibulk and inline framing, limits, terminal errors, hiredis parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol._resp_inline import split_inline
from protocol._resp_reader import (
    HIREDIS_AVAILABLE,
    INLINE_MAX,
    ProtocolFailure,
    RespReader,
)
from protocol._resp_writer import encode
from protocol.redis_commands import CommandError, Echo, Ping, parse_command
from tests.protocol._redis_server import exchange, redis_server, split_replies

PATHS = [
    pytest.param(False, id="pure"),
    pytest.param(
        True,
        id="hiredis",
        marks=pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed"),
    ),
]

Out = list[Any]


def mb(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def perr(text: str) -> ProtocolFailure:
    return ProtocolFailure(b"-ERR Protocol error: " + text.encode() + b"\r\n")


def drain(reader: RespReader) -> Out:
    out: Out = []
    while True:
        item = reader.next_command()
        if item is None:
            return out
        out.append(item)


def read_whole(data: bytes, hiredis: bool, **kw: Any) -> Out:
    r = RespReader(use_hiredis=hiredis, **kw)
    r.feed(data)
    return drain(r)


def read_bytewise(data: bytes, hiredis: bool, **kw: Any) -> Out:
    r = RespReader(use_hiredis=hiredis, **kw)
    out: Out = []
    for i in range(len(data)):
        r.feed(data[i : i + 1])
        out += drain(r)
    return out


def read_split(data: bytes, cuts: list[int], hiredis: bool) -> Out:
    r = RespReader(use_hiredis=hiredis)
    out: Out = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        r.feed(data[prev:cut])
        out += drain(r)
        prev = max(prev, cut)
    return out


CASES = [
    pytest.param(mb(b"GET", b"k"), [[b"GET", b"k"]], id="multibulk"),
    pytest.param(
        mb(b"SET", b"k", b"") + mb(b"PING"), [[b"SET", b"k", b""], [b"PING"]], id="pipelined"
    ),
    pytest.param(
        mb(b"SET", b"k", b"a\r\nb\x00"), [[b"SET", b"k", b"a\r\nb\x00"]], id="binary-bulk"
    ),
    pytest.param(b"*0\r\n*-1\r\n*-7\r\nPING\r\n", [[b"PING"]], id="count<=0-skipped"),
    pytest.param(b"PING\r\nECHO hi\n", [[b"PING"], [b"ECHO", b"hi"]], id="inline"),
    pytest.param(b"\r\n\n   \r\nPING\r\n", [[b"PING"]], id="blank-lines-skipped"),
    pytest.param(b'SET k "hello world"\r\n', [[b"SET", b"k", b"hello world"]], id="dquotes"),
    pytest.param(
        b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\x41\\xzz\\q"\r\n',
        [[b"ECHO", b'\n\r\t\x08\x07\\"Axzzq']],
        id="dquote-escapes",
    ),
    pytest.param(b"ECHO 'it\\'s \\n'\r\n", [[b"ECHO", b"it's \\n"]], id="squote-escapes"),
    pytest.param(b'ECHO a"b c"d\r\n', None, id="quote-not-followed-by-space"),
    pytest.param(b'ECHO a"b c" d\r\n', [[b"ECHO", b"ab c", b"d"]], id="quote-mid-word"),
    pytest.param(b'ECHO ""\r\n', [[b"ECHO", b""]], id="empty-quoted"),
    pytest.param(b"ECHO \x0ba\x0bb\r\n", [[b"ECHO", b"a\x0bb"]], id="vtab-blank-only-between"),
    pytest.param(b'PING "a\r\nPING\r\n', [perr("unbalanced quotes in request")], id="unbalanced"),
    pytest.param(b"PING 'a\r\n", [perr("unbalanced quotes in request")], id="unbalanced-single"),
    pytest.param(b'PING "a\\"\r\n', [perr("unbalanced quotes in request")], id="escaped-closing"),
    pytest.param(
        b"*1\r\n#\r\n" + mb(b"PING"), [perr("expected '$', got '#'")], id="expected-dollar"
    ),
    pytest.param(b"*1\r\n\r\r\n", [perr("expected '$', got ' '")], id="expected-dollar-cr"),
    pytest.param(b"*2147483648\r\n", [perr("invalid multibulk length")], id="count>INT_MAX"),
    pytest.param(b"*01\r\n", [perr("invalid multibulk length")], id="count-leading-zero"),
    pytest.param(b"*+1\r\n", [perr("invalid multibulk length")], id="count-plus"),
    pytest.param(b"*x\r\n", [perr("invalid multibulk length")], id="count-not-number"),
    pytest.param(b"*1\r\n$-1\r\n", [perr("invalid bulk length")], id="bulk-negative"),
    pytest.param(b"*1\r\n$536870913\r\n", [perr("invalid bulk length")], id="bulk>512MiB"),
    pytest.param(b"*1\r\n$ 1\r\n", [perr("invalid bulk length")], id="bulk-space"),
    pytest.param(b"*1\rX$4\r\nPING\r\n", [[b"PING"]], id="byte-after-cr-unchecked"),
    pytest.param(
        b"*1\r\n$4\r\nPINGab$4\r\nPING\r\n",
        [[b"PING"], [b"$4"], [b"PING"]],
        id="bytes-after-bulk-unchecked",
    ),
    pytest.param(mb(b"PING") + b"*2\r\n$4\r\nECHO\r\n", [[b"PING"]], id="incomplete-tail"),
    pytest.param(b"*1\r\n\x00\r\n" + mb(b"PING"), [], id="nul-hides-cr"),
    pytest.param(b"PING a\x00b\r\nPING\r\n", [], id="nul-hides-newline"),
]


@pytest.mark.parametrize("hiredis", PATHS)
@pytest.mark.parametrize(("data", "expected"), CASES)
def test_cases_whole_bytewise_and_junk(data: bytes, expected: Out | None, hiredis: bool) -> None:
    if expected is None:
        expected = [perr("unbalanced quotes in request")]
    assert read_whole(data, hiredis) == expected
    assert read_bytewise(data, hiredis) == expected
    junk = read_whole(data + b"\xff\x00*junk\r\n$", hiredis)
    assert junk[: len(expected)] == expected
    if expected and isinstance(expected[-1], ProtocolFailure):
        assert junk == expected


@pytest.mark.parametrize("hiredis", PATHS)
def test_failure_is_terminal(hiredis: bool) -> None:
    r = RespReader(use_hiredis=hiredis)
    r.feed(b"PING\r\n*x\r\n" + mb(b"SET", b"k", b"v"))
    assert drain(r) == [[b"PING"], perr("invalid multibulk length")]
    r.feed(mb(b"PING"))
    assert r.next_command() is None
    assert r.failure == perr("invalid multibulk length")
    assert r.failure.message == "ERR Protocol error: invalid multibulk length"


@pytest.mark.parametrize("hiredis", PATHS)
@pytest.mark.parametrize(
    ("lead", "start", "what"),
    [
        pytest.param(b"", b"", "inline request", id="inline"),
        pytest.param(b"", b"*", "mbulk count string", id="mbulk"),
        pytest.param(b"*1\r\n", b"$", "bulk count string", id="bulk"),
    ],
)
def test_line_limit_is_split_independent(
    lead: bytes, start: bytes, what: str, hiredis: bool
) -> None:
    end = b"\r\n" if start else b"\n"
    # a line whose end lies exactly at the limit is accepted...
    ok = lead + start + b"1" * (INLINE_MAX - len(start)) + end
    for out in (read_whole(ok, hiredis), read_bytewise(ok, hiredis)):
        assert perr("too big " + what) not in out
    # ...one byte more is refused, whether it arrives whole or byte by byte
    bad = lead + start + b"1" * (INLINE_MAX + 1 - len(start)) + end
    assert read_whole(bad, hiredis) == [perr("too big " + what)]
    r = RespReader(use_hiredis=hiredis)
    r.feed(bad[: len(lead) + INLINE_MAX + 1])
    assert drain(r) == [perr("too big " + what)]


def test_inline_line_at_limit_parses() -> None:
    # the \r counts: Redis errs once 64 KiB are buffered without a \n
    line = b"ECHO " + b"a" * (INLINE_MAX - 6) + b"\r\n"
    assert read_whole(line, False) == [[b"ECHO", b"a" * (INLINE_MAX - 6)]]
    assert read_whole(b"ECHO " + b"a" * (INLINE_MAX - 5) + b"\r\n", False) == [
        perr("too big inline request")
    ]


@pytest.mark.parametrize("hiredis", PATHS)
def test_unauthenticated_limits(hiredis: bool) -> None:
    many = mb(*[b"x"] * 11)
    assert read_whole(many, hiredis, authenticated=False) == [
        perr("unauthenticated multibulk length")
    ]
    assert read_whole(many, hiredis, authenticated=True) == [[b"x"] * 11]
    big = mb(b"AUTH", b"p" * 16385)
    assert read_whole(big, hiredis, authenticated=False) == [perr("unauthenticated bulk length")]
    ok = mb(b"AUTH", b"p" * 16384)
    assert read_whole(ok, hiredis, authenticated=False) == [[b"AUTH", b"p" * 16384]]


@pytest.mark.parametrize("hiredis", PATHS)
def test_max_bulk_and_max_request(hiredis: bool) -> None:
    assert read_whole(b"*1\r\n$101\r\n", hiredis, max_bulk=100) == [perr("invalid bulk length")]
    r = RespReader(use_hiredis=hiredis, max_request=1000)
    r.feed(b"*3\r\n$400\r\n" + b"a" * 402 + b"$400\r\n" + b"b" * 300)
    assert drain(r) == []
    r.feed(b"b" * 102 + b"$400\r\n" + b"c" * 150)
    assert drain(r) == []
    r.feed(b"c" * 50)  # 1026 bytes of one incomplete request
    assert drain(r) == [ProtocolFailure(b"-ERR Protocol error: query buffer limit exceeded\r\n")]


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed")
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"*1\r\n+PING\r\n", id="simple-string"),
        pytest.param(b"*1\r\n:1\r\n", id="integer"),
        pytest.param(b"*1\r\n=8\r\ntxt:PING\r\n", id="verbatim"),
        pytest.param(b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n", id="nested"),
        pytest.param(b"*1\r\n(12\r\n", id="bignum"),
        pytest.param(b"*1\r\n_\r\n", id="null"),
    ],
)
def test_hiredis_never_accepts_what_redis_refuses(data: bytes) -> None:
    assert read_whole(data, True) == read_whole(data, False)
    assert isinstance(read_whole(data, True)[-1], ProtocolFailure)


def test_large_pipeline_compacts_buffer() -> None:
    r = RespReader(use_hiredis=False)
    one = mb(b"SET", b"key", b"v" * 100)
    for _ in range(2000):
        r.feed(one)
        assert r.next_command() == [b"SET", b"key", b"v" * 100]
    assert len(r._buf) < 2 * len(one) + 70_000


# -- properties --------------------------------------------------------------------

FRAGMENTS = [
    b"PING", b"ECHO", b"a", b" ", b"\t", b'"', b"'", b"\\", b"x41", b"n", b"\r\n", b"\n",
    b"\r", b"*", b"$", b"0", b"1", b"2", b"3", b"-", b"\x00", b"\x0b", b"#", b"99999", b">",
]  # fmt: skip
streams = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
    st.lists(
        st.lists(st.binary(max_size=8), min_size=1, max_size=4).map(lambda a: mb(*a)),
        max_size=5,
    ).map(b"".join),
)


def check_shape(out: Out) -> None:
    for i, item in enumerate(out):
        if isinstance(item, ProtocolFailure):
            assert i == len(out) - 1
            assert item.reply.startswith(b"-ERR Protocol error: ")
            assert item.reply.endswith(b"\r\n") and item.reply.count(b"\n") == 1
        else:
            assert isinstance(item, list) and item
            assert all(type(a) is bytes for a in item)


@settings(max_examples=300, deadline=None)
@given(data=streams, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_bytes_give_commands_then_at_most_one_failure(data: bytes, cuts: list[int]) -> None:
    whole = read_whole(data, False)
    check_shape(whole)
    cuts = [min(c, len(data)) for c in cuts]
    assert read_split(data, cuts, False) == whole
    if HIREDIS_AVAILABLE:
        assert read_whole(data, True) == whole
        assert read_split(data, cuts, True) == whole


def naive_split(line: bytes) -> list[bytes] | None:
    """A direct port of sdssplitargs, char by char, as the oracle for split_inline."""
    p = line.split(b"\x00")[0] + b"\x00"
    i = 0
    out: list[bytes] = []
    space = b" \t\n\x0b\x0c\r"
    while True:
        while p[i] and p[i] in space:
            i += 1
        if not p[i]:
            return out
        inq = insq = done = False
        cur = bytearray()
        hexd = b"0123456789abcdefABCDEF"
        while not done:
            c = p[i]
            if inq:
                if c == 0x5C and p[i + 1] == 0x78 and p[i + 2] in hexd and p[i + 3] in hexd:
                    if p[i + 2] and p[i + 3]:
                        cur.append(int(p[i + 2 : i + 4], 16))
                        i += 3
                    else:
                        cur.append(0x78)
                        i += 1
                elif c == 0x5C and p[i + 1]:
                    i += 1
                    cur.append({0x6E: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7}.get(p[i], p[i]))
                elif c == 0x22:
                    if p[i + 1] and p[i + 1] not in space:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and p[i + 1] == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if p[i + 1] and p[i + 1] not in space:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif c in b" \n\r\t\x00":
                done = True
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                cur.append(c)
            if p[i]:
                i += 1
        out.append(bytes(cur))


inline_lines = st.lists(
    st.sampled_from([b"a", b"b", b" ", b"\t", b"\x0b", b"\r", b'"', b"'", b"\\", b"x", b"4", b"f",
                     b"n", b"\x00", b"\xff"]),
    max_size=40,
).map(b"".join)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(line=inline_lines)
def test_split_inline_matches_sdssplitargs_port(line: bytes) -> None:
    assert split_inline(line) == naive_split(line)


bare_lines = st.lists(
    st.sampled_from([b"a", b"b", b" ", b"\t", b"\x0b", b"\x0c", b"\r", b"\n", b"\\", b"x",
                     b"\x00", b"\xff"]),
    max_size=40,
).map(b"".join)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(line=bare_lines)
def test_split_inline_fast_path_for_lines_without_quotes(line: bytes) -> None:
    # split_inline splits a line without quotes with one regex: the same answer
    assert split_inline(line) == naive_split(line)


def test_split_inline_is_linear_on_pathological_lines() -> None:
    # the issue-9 freeze: unbalanced quotes and 64 KiB of backslashes
    assert split_inline(b'GET "' + b"a" * INLINE_MAX) is None
    assert split_inline(b'"' + b"\\" * INLINE_MAX) is None
    assert split_inline(b"'" + b"\\" * INLINE_MAX + b"'") is None  # the last one escapes '
    assert split_inline(b"'" + b"\\" * INLINE_MAX + b"x'") == [b"\\" * INLINE_MAX + b"x"]
    assert split_inline(b'"a" ' * 10_000) == [b"a"] * 10_000


# -- against a real redis-server ---------------------------------------------------------


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as port:
        yield port


def model_replies(data: bytes, hiredis: bool) -> bytes:
    """What Redis answers to `data` if it reads it as we do (PING/ECHO/errors only)."""
    out = []
    for item in read_whole(data, hiredis):
        if isinstance(item, ProtocolFailure):
            out.append(item.reply)
            continue
        try:
            cmd = parse_command(item, now_ms=0)
        except CommandError as exc:
            out.append(exc.reply)
            continue
        if isinstance(cmd, Ping):
            out.append(b"+PONG\r\n" if cmd.message is None else encode(cmd.message))
        else:
            assert isinstance(cmd, Echo), item
            out.append(encode(cmd.message))
    return b"".join(out)


def redis_view(port: int, data: bytes) -> tuple[int, bytes | None]:
    """(number of replies to commands, the protocol error line or None) as Redis sends them."""
    replies = split_replies(exchange(port, data))
    if replies and replies[-1].startswith(b"-ERR Protocol error"):
        return len(replies) - 1, replies[-1]
    return len(replies), None


def our_view(data: bytes, hiredis: bool) -> tuple[int, bytes | None]:
    out = read_whole(data, hiredis)
    if out and isinstance(out[-1], ProtocolFailure):
        return len(out) - 1, out[-1].reply
    return len(out), None


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_cases_against_redis(redis_port: int, data: bytes, expected: Out | None) -> None:
    assert our_view(data, False) == redis_view(redis_port, data)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join))
def test_random_streams_against_redis(redis_port: int, data: bytes) -> None:
    # the fragments spell no command with side effects: PING, ECHO or unknown ones
    assert our_view(data, HIREDIS_AVAILABLE) == redis_view(redis_port, data)
    assert model_replies(data, HIREDIS_AVAILABLE) == exchange(redis_port, data)


INLINE_SAMPLES = [
    b'ECHO "a\\x4g"\r\n',
    b'ECHO a"b c"\r\n',
    b"ECHO 'it\\'s'\r\n",
    b'ECHO "\\n\\r\\t\\b\\a\\z"\r\n',
    b"ECHO \x0ba\r\n",
    b'PING ""\r\n',
    b"ECHO\ta\r\n",
    b"NOPE " + b"x" * 200 + b" y\r\n",
    mb(b"ECHO", b"\x00\r\n\xff"),
]


@pytest.mark.parametrize("data", INLINE_SAMPLES)
def test_replies_against_redis(redis_port: int, data: bytes) -> None:
    assert model_replies(data, False) == exchange(redis_port, data)


class _RecordingHiredis:
    """hiredis as the reader uses it, recording every byte each mirror was fed."""

    def __init__(self) -> None:
        self.fed: list[bytearray] = []

    def Reader(self) -> Any:  # hiredis.Reader, as the reader calls it
        import hiredis

        record = bytearray()
        self.fed.append(record)
        real = hiredis.Reader()

        class Mirror:
            def feed(self, data: bytes) -> None:
                record.extend(data)
                real.feed(data)

            def gets(self) -> Any:
                return real.gets()

        return Mirror()


def _aggregate_headers(fed: bytes) -> list[int]:
    """Every `*N`, `~N`, `>N`, `|N`, `%N` count hiredis could read: at the start or after \\n."""
    import re

    return [int(m.group(1)) for m in re.finditer(rb"(?:^|\n)[*%~>|]([0-9]+)", fed)]


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed")
@pytest.mark.parametrize(
    "data",
    [
        b"*2147483647\r\n",
        b"*1\r\n>1000000000\r\n",
        b"*2\r\n$1\r\na\r\n~999999\r\n",
        mb(b"PING") + b"*1\r\n|2147483647\r\n" + mb(b"PING"),
        mb(b"PING") * 3 + b"*10000\r\n" + mb(b"x") * 10000,
    ],
)
def test_hiredis_is_never_handed_a_big_aggregate_header(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hiredis allocates an aggregate's N slots from its header: freeing an unfinished
    # `*2147483647` took ~4 s and building a nested `>1000000000` ~23 s, the server's
    # whole loop stalled by 13 bytes from a client that had not even authenticated.
    # The pure path, whose cost follows the bytes received, reads those instead.
    import protocol._resp_reader as reader_module

    recording = _RecordingHiredis()
    monkeypatch.setattr(reader_module, "_hiredis", recording)
    expected = read_whole(data, False)
    assert read_whole(data, True) == expected
    assert read_bytewise(data, True) == expected
    for fed in recording.fed:
        assert all(n < 10000 for n in _aggregate_headers(bytes(fed))), bytes(fed[:40])


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed")
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"*1\rX$4\rXPING\rX",  # Redis skips the byte after \r unseen; hiredis refuses it
        b"*1\r\n$4\r\nPING\r\nPING\r\n",  # a multibulk and an inline command, in turn
    ],
)
def test_hiredis_copies_each_byte_a_bounded_number_of_times(
    request_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mirror is made from a copy of the rest of the buffer. It used to be made anew
    # for every request hiredis could not parse, so 100,000 such PINGs sent at once
    # kept the server busy (and every other client waiting) for 12.6 s, not 0.15 s.
    import protocol._resp_reader as reader_module

    recording = _RecordingHiredis()
    monkeypatch.setattr(reader_module, "_hiredis", recording)
    n = 20000
    data = request_bytes * n
    r = RespReader(use_hiredis=True)
    out: Out = []
    for i in range(0, len(data), 65536):
        r.feed(data[i : i + 65536])
        out += drain(r)
    assert len(out) == n * request_bytes.count(b"PING")
    assert sum(len(fed) for fed in recording.fed) <= 2 * len(data)
