"""Differential: the same command sequences sent to a real redis-server and to
bitcask-server must get the same reply bytes.

Hypothesis builds sequences over three keys and a few values chosen to meet the
interesting rules (integers at the 64-bit edge, non-numbers, conditions of SET and
EXPIRE, RENAME of a missing key, transactions). Left out, as legitimately
different: TTL countdowns, KEYS/SCAN order, INCRBYFLOAT digits past a double's
precision (the floats here are exact in binary). Each sequence starts with FLUSHALL
on both servers; the bytes are compared whole, error lines included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol._redis_server import RedisConnection, exchange, parse_reply, redis_server
from tests.serverproc import ServerProcess

KEYS = st.sampled_from([b"a", b"b", b"c", b"\x00\xff", b""])  # binary and empty keys too
VALUES = st.sampled_from(
    [b"1", b"10", b"-3", b"x", b"", b"2.5", b"-0", b"0x10", b"\xff\x00"]
)  # 2**63-1: see CURATED
INTS = st.sampled_from([b"1", b"-1", b"5", b"0", b"9223372036854775807", b"x"])
FLOATS = st.sampled_from([b"1.5", b"-0.25", b"3", b"abc"])
SECONDS = st.sampled_from([b"1000", b"2000", b"-5", b"x"])


def _cmd(*words: bytes) -> list[bytes]:
    return list(words)


COMMAND = st.one_of(
    st.builds(_cmd, st.just(b"SET"), KEYS, VALUES),
    st.builds(lambda k, v, c: [b"SET", k, v, *c], KEYS, VALUES,
              st.sampled_from([[b"NX"], [b"XX"], [b"GET"], [b"NX", b"GET"], [b"XX", b"GET"],
                               [b"KEEPTTL"], [b"EX", b"1000"], [b"EX", b"0"], [b"NX", b"XX"]])),
    st.builds(_cmd, st.sampled_from([b"GET", b"GETDEL", b"STRLEN", b"TYPE", b"INCR",
                                     b"DECR", b"PERSIST"]), KEYS),
    st.builds(_cmd, st.sampled_from([b"GETSET", b"SETNX", b"APPEND"]), KEYS, VALUES),
    st.builds(_cmd, st.sampled_from([b"INCRBY", b"DECRBY"]), KEYS, INTS),
    st.builds(_cmd, st.just(b"INCRBYFLOAT"), KEYS, FLOATS),
    st.builds(lambda ks: [b"DEL", *ks], st.lists(KEYS, min_size=1, max_size=3)),
    st.builds(lambda ks: [b"EXISTS", *ks], st.lists(KEYS, min_size=1, max_size=3)),
    st.builds(lambda ks: [b"MGET", *ks], st.lists(KEYS, min_size=1, max_size=3)),
    st.builds(lambda cmd, kv: [cmd, *[w for pair in kv for w in pair]],
              st.sampled_from([b"MSET", b"MSETNX"]),
              st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3)),
    st.builds(_cmd, st.sampled_from([b"RENAME", b"RENAMENX"]), KEYS, KEYS),
    st.builds(lambda k, s, c: [b"EXPIRE", k, s, *c], KEYS, SECONDS,
              st.sampled_from([[], [b"NX"], [b"XX"], [b"GT"], [b"LT"], [b"NX", b"XX"],
                               [b"XX", b"GT"], [b"LT", b"XX"]])),
    st.builds(lambda k, o: [b"GETEX", k, *o], KEYS,
              st.sampled_from([[], [b"PERSIST"], [b"EX", b"1000"], [b"EX", b"0"], [b"PX", b"-1"],
                               [b"PXAT", b"1"], [b"EX", b"1", b"PX", b"2"], [b"FOO"]])),
    st.builds(_cmd, st.just(b"SETEX"), KEYS, SECONDS, VALUES),
    st.builds(_cmd, st.sampled_from([b"DBSIZE", b"PING"])),
)  # fmt: skip

TRANSACTION = st.builds(
    lambda body, end: [[b"MULTI"], *body, [end]],
    st.lists(COMMAND, max_size=4),
    st.sampled_from([b"EXEC", b"DISCARD"]),
)
SEQUENCE = st.lists(st.one_of(COMMAND, TRANSACTION), min_size=1, max_size=12)


def _flatten(items: list[list[bytes] | list[list[bytes]]]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for item in items:
        if item and isinstance(item[0], list):
            out.extend(item)  # type: ignore[arg-type]
        else:
            out.append(item)  # type: ignore[arg-type]
    return out


def _encode(argvs: list[list[bytes]]) -> bytes:
    out = [b"*1\r\n$8\r\nFLUSHALL\r\n"]
    for argv in argvs:
        out.append(b"*%d\r\n" % len(argv))
        out.extend(b"$%d\r\n%s\r\n" % (len(w), w) for w in argv)
    return b"".join(out)


# Curated sequences kept as regressions (each once disagreed or guards a rule).
CURATED = [
    [[b"SET", b"a", b"9223372036854775807"], [b"INCR", b"a"], [b"GET", b"a"]],
    [[b"SET", b"a", b"1"], [b"RENAME", b"b", b"a"], [b"RENAME", b"a", b"a"], [b"GET", b"a"]],
    [[b"MULTI"], [b"SET", b"a", b"1"], [b"INCR", b"a"], [b"GET", b"a"], [b"EXEC"]],
    [[b"MULTI"], [b"SET", b"a", b"x"], [b"INCR", b"a"], [b"GET", b"a"], [b"EXEC"]],
    [[b"MULTI"], [b"SET", b"a"], [b"EXEC"], [b"GET", b"a"]],
    [[b"SET", b"a", b"v", b"EX", b"1000"], [b"EXPIRE", b"a", b"2000", b"LT"],
     [b"EXPIRE", b"a", b"500", b"GT"], [b"PERSIST", b"a"], [b"EXPIRE", b"a", b"5", b"XX"]],
    [[b"EXPIRE", b"a", b"-5"], [b"SET", b"a", b"1"], [b"EXPIRE", b"a", b"-5"], [b"EXISTS", b"a"]],
    [[b"MSETNX", b"a", b"1", b"a", b"2"], [b"GET", b"a"], [b"MSETNX", b"a", b"3", b"b", b"4"]],
    [[b"DEL", b"a", b"a"], [b"SET", b"a", b""], [b"STRLEN", b"a"], [b"APPEND", b"a", b"xy"]],
    [[b"INCRBYFLOAT", b"a", b"1.5"], [b"INCRBYFLOAT", b"a", b"-0.25"], [b"GET", b"a"]],
    [[b"SETNX", b"a", b"1"], [b"GETSET", b"a", b"2"], [b"GETDEL", b"a"], [b"TYPE", b"a"]],
    [[b"MULTI"], [b"MSETNX", b"a", b"1", b"b", b"2"], [b"MSETNX", b"b", b"3", b"c", b"4"],
     [b"SET", b"c", b"5"], [b"MSETNX", b"c", b"6"], [b"MGET", b"a", b"b", b"c"], [b"EXEC"]],
    [[b"MULTI"], [b"MSETNX", b"a"], [b"EXEC"], [b"EXISTS", b"a"]],
    # absolute expiries are exact: PEXPIRETIME / EXPIRETIME (rounded as Redis) agree
    [[b"SET", b"a", b"v", b"PXAT", b"4102444800123"], [b"PEXPIRETIME", b"a"],
     [b"EXPIRETIME", b"a"], [b"PEXPIREAT", b"a", b"4102444800500"], [b"EXPIRETIME", b"a"],
     [b"PEXPIRETIME", b"b"], [b"SET", b"b", b"1"], [b"PEXPIRETIME", b"b"], [b"PTTL", b"b"],
     [b"TTL", b"c"], [b"EXPIREAT", b"b", b"4102444800"], [b"PEXPIRETIME", b"b"]],
    [[b"SET", b"a", b"1", b"EX", b"1000"], [b"SET", b"b", b"2"], [b"DBSIZE"],
     [b"PERSIST", b"a"], [b"DBSIZE"]],
    # reads inside EXEC see the writes before them, not after (found by Hypothesis)
    [[b"MULTI"], [b"SET", b"a", b"1"], [b"DBSIZE"], [b"SET", b"b", b"1"], [b"DEL", b"a"],
     [b"DBSIZE"], [b"EXEC"]],
    [[b"MULTI"], [b"SET", b"a", b"1", b"PXAT", b"4102444800123"], [b"PEXPIRETIME", b"a"],
     [b"PERSIST", b"a"], [b"PEXPIRETIME", b"a"], [b"DEL", b"a"], [b"PTTL", b"a"], [b"EXEC"]],
    # XX combines with GT or LT: both must hold (XX GT with a past time once deleted the key)
    [[b"SET", b"a", b"v", b"EX", b"1000"], [b"EXPIRE", b"a", b"100", b"XX", b"GT"],
     [b"EXPIRE", b"a", b"-1", b"GT", b"XX"], [b"EXISTS", b"a"], [b"TTL", b"a"],
     [b"EXPIRE", b"a", b"2000", b"XX", b"LT"], [b"TTL", b"a"], [b"EXPIRE", b"a", b"500", b"LT", b"XX"],
     [b"TTL", b"a"], [b"SET", b"b", b"v"], [b"EXPIRE", b"b", b"100", b"XX", b"LT"],
     [b"PEXPIRE", b"b", b"-1", b"LT", b"XX"], [b"TTL", b"b"], [b"EXPIRE", b"b", b"100", b"LT"],
     [b"TTL", b"b"], [b"PEXPIREAT", b"b", b"1", b"XX", b"LT"], [b"EXISTS", b"b"]],
    # INCRBYFLOAT reads the stored value as strtold does: hex and inf yes, "1_0" no
    [[b"SET", b"a", b"1_0"], [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"0x10"],
     [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"0x1.8p1"], [b"INCRBYFLOAT", b"a", b"1"],
     [b"SET", b"a", b"-inf"], [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"Infinity"],
     [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"nan"], [b"INCRBYFLOAT", b"a", b"1"],
     [b"SET", b"a", b" 1"], [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"1 "],
     [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"\xd9\xa1"], [b"INCRBYFLOAT", b"a", b"1"],
     [b"SET", b"a", b".5e1"], [b"INCRBYFLOAT", b"a", b"1"], [b"SET", b"a", b"0x"],
     [b"INCRBYFLOAT", b"a", b"1"], [b"GET", b"a"]],
    # INCRBYFLOAT computes in a long double as Redis: 0.1 ten times is 1 (doubles
    # gave 0.9999999999999999), 2**63-1 - 0.25 stays ...807, 1e400 is a number;
    # hexadecimal beyond the long double range is refused (an OverflowError of
    # float.fromhex once dropped the connection without a reply)
    [*[[b"INCRBYFLOAT", b"a", b"0.1"]] * 10, [b"INCRBYFLOAT", b"b", b"0.1"],
     [b"INCRBYFLOAT", b"b", b"0.2"], [b"SET", b"c", b"9223372036854775807"],
     [b"INCRBYFLOAT", b"c", b"-0.25"], [b"INCRBYFLOAT", b"c", b"1e400"],
     [b"INCRBYFLOAT", b"c", b"123456789.123456789"], [b"SET", b"c", b"1.5e308"],
     [b"INCRBYFLOAT", b"c", b"1.5e308"], [b"INCRBYFLOAT", b"d", b"0x1p2000"],
     [b"INCRBYFLOAT", b"d", b"0x1p99999"], [b"SET", b"d", b"-0x1p99999"],
     [b"INCRBYFLOAT", b"d", b"1"], [b"INCRBYFLOAT", b"d", b"1e99999"],
     [b"INCRBYFLOAT", b"d", b"1e-99999"], [b"INCRBYFLOAT", b"d", b"5e-18"],
     [b"INCRBYFLOAT", b"d", b"inf"], [b"PING"]],
    # GETEX's invalid expiry is an error for a key that exists where GETEX stands
    [[b"MULTI"], [b"SET", b"a", b"1"], [b"GETEX", b"a", b"EX", b"0"], [b"DEL", b"a"],
     [b"GETEX", b"a", b"PX", b"-1"], [b"SET", b"b", b"1"], [b"EXEC"]],
    [[b"SET", b"a", b"1"], [b"MULTI"], [b"DEL", b"a"], [b"GETEX", b"a", b"EX", b"0"],
     [b"SET", b"a", b"2"], [b"GETEX", b"a", b"EXAT", b"-5"], [b"EXEC"]],
    # an EXEC of the wrong arity discards the transaction: the connection leaves MULTI
    [[b"MULTI"], [b"SET", b"a", b"1"], [b"EXEC", b"x"], [b"GET", b"a"], [b"EXEC"]],
    [[b"MULTI"], [b"EXEC", b"x"], [b"SET", b"a", b"1"], [b"DISCARD"], [b"GET", b"a"]],
]  # fmt: skip


def test_curated_and_generated_sequences_agree_with_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ours = server_factory(sync="never")
    with redis_server(tmp_path) as redis_port:

        def check(argvs: list[list[bytes]]) -> None:
            data = _encode(argvs)
            expected = exchange(redis_port, data)
            got = exchange(ours.port, data)
            assert got == expected, argvs

        for argvs in CURATED:
            check(argvs)

        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(SEQUENCE)
        def generated(items: list[list[bytes] | list[list[bytes]]]) -> None:
            check(_flatten(items))

        generated()


# Two connections, `w` (the one that WATCHes) and `o` (the other): an EXEC refused
# before it runs (wrong arity, NOAUTH) discards the transaction AND the watches, as
# Redis's execCommandAbort; a refused command inside MULTI makes EXEC fail.
TWO_CONNECTIONS = [
    [("w", [b"WATCH", b"k"]), ("w", [b"EXEC", b"x"]), ("o", [b"SET", b"k", b"1"]),
     ("w", [b"MULTI"]), ("w", [b"SET", b"k", b"2"]), ("w", [b"EXEC"]), ("o", [b"GET", b"k"])],
    [("w", [b"WATCH", b"k"]), ("w", [b"MULTI"]), ("w", [b"EXEC", b"x"]),
     ("o", [b"SET", b"k", b"1"]), ("w", [b"MULTI"]), ("w", [b"SET", b"k", b"2"]),
     ("w", [b"EXEC"]), ("o", [b"GET", b"k"])],
    [("w", [b"WATCH", b"k"]), ("o", [b"SET", b"k", b"1"]), ("w", [b"MULTI"]),
     ("w", [b"EXEC", b"x"]), ("w", [b"MULTI"]), ("w", [b"SET", b"k", b"2"]), ("w", [b"EXEC"]),
     ("o", [b"GET", b"k"])],
]  # fmt: skip

AUTHED = [
    [b"HELLO", b"3"], [b"EXEC"], [b"EXEC", b"x"], [b"MULTI"], [b"GET", b"a"], [b"AUTH", b"t"], [b"MULTI"],
    [b"SET", b"a", b"1"], [b"EXEC", b"x"], [b"GET", b"a"], [b"EXEC"], [b"MULTI"], [b"EXEC"],
]  # fmt: skip


def _run_pair(port: int, script: list[tuple[str, list[bytes]]]) -> list[bytes]:
    conns = {"w": RedisConnection(port), "o": RedisConnection(port)}
    try:
        conns["o"].call([b"FLUSHALL"])
        return [conns[who].call(argv) for who, argv in script]
    finally:
        for c in conns.values():
            c.close()


def test_refused_exec_discards_transaction_and_watches_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ours = server_factory(sync="never")
    with redis_server(tmp_path) as redis_port:
        for script in TWO_CONNECTIONS:
            assert _run_pair(ours.port, script) == _run_pair(redis_port, script), script


def test_exec_before_auth_aborts_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ours = server_factory(sync="never", extra=["--auth", "t"])
    with redis_server(tmp_path, "--requirepass", "t") as redis_port:
        data = b"".join(
            b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in argv)
            for argv in AUTHED
        )
        expected = exchange(redis_port, data)
        assert b"EXECABORT Transaction discarded because of: NOAUTH" in expected
        assert exchange(ours.port, data) == expected


NUMBERS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
).map(lambda x: str(x).encode())


def test_incrbyfloat_digits_agree_with_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Redis adds in a C long double and stores "%.17Lf" without trailing zeros;
    # bitcask._ldouble emulates it exactly, so every digit must agree.
    ours = server_factory(sync="never")
    with redis_server(tmp_path) as redis_port:
        theirs_conn, ours_conn = RedisConnection(redis_port), RedisConnection(ours.port)
        try:

            @settings(max_examples=150, deadline=None, database=None)
            @given(st.one_of(st.none(), NUMBERS), st.lists(NUMBERS, min_size=1, max_size=3))
            def agree(start: bytes | None, increments: list[bytes]) -> None:
                first = [b"DEL", b"f"] if start is None else [b"SET", b"f", start]
                for argv in [first, *([b"INCRBYFLOAT", b"f", n] for n in increments)]:
                    assert ours_conn.call(argv) == theirs_conn.call(argv), argv

            agree()
        finally:
            theirs_conn.close()
            ours_conn.close()


# HELLO acts on its options in order, each at once, as Redis 7.0's helloCommand:
# an AUTH before a bad option has logged in, a SETNAME before one has named the
# connection, a wrong AUTH stops the options after it. RESET is served before AUTH.
HELLO_SEQUENCES = [
    [[b"HELLO", b"3", b"AUTH", b"default", b"t", b"SETNAME", b"a b"], [b"GET", b"a"]],
    [[b"HELLO", b"2", b"AUTH", b"default", b"t", b"FOO"], [b"CLIENT", b"GETNAME"]],
    [[b"HELLO", b"3", b"AUTH", b"default", b"x", b"AUTH", b"default", b"t"], [b"GET", b"a"]],
    [[b"HELLO", b"3", b"AUTH", b"default", b"t", b"AUTH", b"default", b"x"], [b"GET", b"a"]],
    [[b"HELLO", b"2", b"AUTH", b"default", b"t", b"SETNAME"], [b"GET", b"a"]],
    [[b"HELLO", b"3", b"SETNAME", b"ab", b"AUTH", b"default", b"t", b"FOO"],
     [b"CLIENT", b"GETNAME"], [b"GET", b"a"]],
    [[b"HELLO", b"3", b"SETNAME", b"ab"], [b"AUTH", b"t"], [b"CLIENT", b"GETNAME"]],
    [[b"AUTH", b"t"], [b"HELLO", b"3", b"SETNAME", b"ab", b"AUTH", b"default", b"x"],
     [b"CLIENT", b"GETNAME"], [b"GET", b"a"]],
    [[b"AUTH", b"t"], [b"HELLO", b"3", b"SETNAME", b"ab", b"SETNAME", b"a b"],
     [b"CLIENT", b"GETNAME"], [b"GET", b"a"]],
    [[b"RESET"], [b"PING"], [b"AUTH", b"t"], [b"RESET"], [b"PING"]],
    [[b"AUTH", b"t"], [b"MULTI"], [b"HELLO", b"2", b"AUTH", b"default", b"t", b"FOO"],
     [b"EXEC"]],
]  # fmt: skip


def _hello_normalized(data: bytes) -> bytes:
    # HELLO's map: Redis's exact version and client id differ by design (redis.md 8)
    return re.sub(rb"[%*](7|14)\r\n\$6\r\nserver\r\n.*?\$7\r\nmodules\r\n\*0\r\n", b"<HELLO>",
                  data, flags=re.S)  # fmt: skip


def test_hello_options_and_reset_before_auth_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ours = server_factory(sync="never", extra=["--auth", "t"])
    with redis_server(tmp_path, "--requirepass", "t") as redis_port:
        for argvs in HELLO_SEQUENCES:
            data = b"".join(
                b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in argv)
                for argv in argvs
            )
            expected = _hello_normalized(exchange(redis_port, data))
            assert _hello_normalized(exchange(ours.port, data)) == expected, argvs


# CONFIG GET: a name without `[*?` is answered as spelled (redis-py's config_get("MAXMEMORY")
# is keyed by the reply: ours said maxmemory), each parameter once, as first named.
CONFIG_GETS = [
    [b"CONFIG", b"GET", b"MAXMEMORY"],
    [b"CONFIG", b"GET", b"MaxMemory", b"maxmemory"],
    [b"CONFIG", b"GET", b"save", b"SAVE", b"requirepass"],
    [b"CONFIG", b"GET", b"BIND", b"nosuch"],
    [b"CONFIG", b"GET", b"MAXMEM*"],
]


def _pairs(reply: bytes) -> set[tuple[object, object]]:
    items = parse_reply(reply)
    assert isinstance(items, list)
    return set(zip(items[::2], items[1::2], strict=True))


def test_config_get_names_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    ours = server_factory(sync="never")
    with redis_server(tmp_path) as redis_port:
        theirs_conn, ours_conn = RedisConnection(redis_port), RedisConnection(ours.port)
        try:
            for argv in CONFIG_GETS:
                theirs = theirs_conn.call(argv)
                if b"*" in argv[-1]:  # Redis has more maxmemory-* parameters
                    assert b"$9\r\nmaxmemory\r\n$1\r\n0\r\n" in theirs
                    assert ours_conn.call(argv) == b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
                    continue
                # Redis answers in its dict's order: compare the pairs
                assert _pairs(ours_conn.call(argv)) == _pairs(theirs), argv
        finally:
            theirs_conn.close()
            ours_conn.close()
