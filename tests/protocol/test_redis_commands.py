"""The Redis command table and argv parsing: exact Redis 7 errors, checked against redis-server."""

from __future__ import annotations

import doctest
import importlib
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol._resp_writer import encode
from protocol.redis_commands import (
    COMMANDS,
    CommandError,
    CommandInfo,
    Del,
    Expire,
    GetEx,
    Hello,
    IncrBy,
    IncrByFloat,
    MSet,
    Ping,
    Scan,
    Set,
    Ttl,
    check_command,
    command_docs,
    command_info,
    parse_command,
)
from tests.protocol._redis_server import RedisConnection, parse_reply, redis_server

NOW = 1_700_000_000_000


def args(line: str) -> list[bytes]:
    return [w.encode() for w in line.split(" ")]


def error_of(argv: list[bytes], now_ms: int = NOW) -> str | None:
    try:
        cmd = parse_command(argv, now_ms)
    except CommandError as exc:
        return exc.message
    # HELLO's option errors come after the options before them ran (Redis 7.0)
    return cmd.error if isinstance(cmd, Hello) else None


PARSED = [
    ("GET k", None),
    ("set k v", Set("set", b"k", b"v")),
    ("SET k v NX GET EX 10", Set("set", b"k", b"v", nx=True, get=True, expire_at_ms=NOW + 10_000)),
    ("SET k v xx PXAT 5 PXAT 7", Set("set", b"k", b"v", xx=True, expire_at_ms=7)),
    ("SET k v KEEPTTL KEEPTTL", Set("set", b"k", b"v", keep_ttl=True)),
    ("SETEX k 2 v", Set("setex", b"k", b"v", expire_at_ms=NOW + 2000)),
    ("PSETEX k 2 v", Set("psetex", b"k", b"v", expire_at_ms=NOW + 2)),
    ("GETSET k v", Set("getset", b"k", b"v", get=True)),
    ("GETEX k PERSIST", GetEx("getex", b"k", None, True)),
    (
        "GETEX k EX 0",
        GetEx("getex", b"k", None, False, "ERR invalid expire time in 'getex' command"),
    ),
    ("INCR k", IncrBy("incr", b"k", 1)),
    ("DECR k", IncrBy("decr", b"k", -1)),
    ("DECRBY k -5", IncrBy("decrby", b"k", 5)),
    ("INCRBYFLOAT k 0x1p3", IncrByFloat("incrbyfloat", b"k", 8.0)),
    ("INCRBYFLOAT k -.5e1", IncrByFloat("incrbyfloat", b"k", -5.0)),
    # beyond a double: infinite like 1e400 (once an OverflowError that killed the connection)
    ("INCRBYFLOAT k 0x1p99999", IncrByFloat("incrbyfloat", b"k", math.inf)),
    ("INCRBYFLOAT k -0x1P2000", IncrByFloat("incrbyfloat", b"k", -math.inf)),
    ("MSETNX a 1 b 2", MSet("msetnx", ((b"a", b"1"), (b"b", b"2")))),
    ("UNLINK a b a", Del("unlink", (b"a", b"b", b"a"))),
    ("EXPIRE k -5 gt", Expire("expire", b"k", NOW - 5000, gt=True)),
    ("PEXPIREAT k 5 XX LT", Expire("pexpireat", b"k", 5, xx=True, lt=True)),
    ("PEXPIRETIME k", Ttl("pexpiretime", b"k", True, True)),
    ("SCAN -1 MATCH a* COUNT 5 TYPE string", Scan("scan", 2**64 - 1, b"a*", 5, b"string")),
    ("SCAN +7", Scan("scan", 7, None, 10, None)),
    ("PING", Ping("ping", None)),
    (
        "HELLO 3 AUTH default pw SETNAME app",
        Hello("hello", 3, (("auth", b"default", b"pw"), ("setname", b"app", b""))),
    ),
    ("COMMAND", CommandInfo("command", ())),
]


@pytest.mark.parametrize(("line", "expected"), PARSED)
def test_parsed(line: str, expected: Any) -> None:
    cmd = parse_command(args(line), NOW)
    if expected is not None:
        assert cmd == expected


ERRORS = [
    ("GET", "ERR wrong number of arguments for 'get' command"),
    ("FOO a b", "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
    ("SET k v NX XX", "ERR syntax error"),
    ("SET k v EX 1 PX 1", "ERR syntax error"),
    ("SET k v EX", "ERR syntax error"),
    ("SET k v EX 0", "ERR invalid expire time in 'set' command"),
    ("SET k v EX 010", "ERR value is not an integer or out of range"),
    ("SET k v EX 9223372036854775", "ERR invalid expire time in 'set' command"),
    ("SET k v PX 9223372036854775807", "ERR invalid expire time in 'set' command"),
    ("SETEX k 0 v", "ERR invalid expire time in 'setex' command"),
    ("INCRBY k 1.5", "ERR value is not an integer or out of range"),
    ("DECRBY k -9223372036854775808", "ERR decrement would overflow"),
    ("INCRBYFLOAT k 1_0", "ERR value is not a valid float"),
    ("INCRBYFLOAT k nan", "ERR value is not a valid float"),
    ("MSET a", "ERR wrong number of arguments for 'mset' command"),
    ("MSET a b c", "ERR wrong number of arguments for 'mset' command"),
    ("EXPIRE k 1 NX XX", "ERR NX and XX, GT or LT options at the same time are not compatible"),
    ("EXPIRE k 1 GT LT", "ERR GT and LT options at the same time are not compatible"),
    ("EXPIRE k 1 FOO", "ERR Unsupported option FOO"),
    ("EXPIRE k 9223372036854776", "ERR invalid expire time in 'expire' command"),
    ("SCAN x", "ERR invalid cursor"),
    ("SCAN 18446744073709551616", "ERR invalid cursor"),
    ("SCAN 0 COUNT 0", "ERR syntax error"),
    ("SELECT x", "ERR value is not an integer or out of range"),
    (
        "SELECT 3000000000",
        "ERR value is out of range, value must between -2147483648 and 2147483647",
    ),
    ("HELLO 4", "NOPROTO unsupported protocol version"),
    ("HELLO 3 AUTH a", "ERR Syntax error in HELLO option 'AUTH'"),
    ("CLIENT FOO", "ERR unknown subcommand 'FOO'. Try CLIENT HELP."),
    ("client SETNAME", "ERR wrong number of arguments for 'client|setname' command"),
    ("CLIENT SETINFO lib-xx 1", "ERR Unrecognized option 'lib-xx'"),
    ("FLUSHDB now", "ERR syntax error"),
    ("AUTH a b c", "ERR syntax error"),
]


@pytest.mark.parametrize(("line", "message"), ERRORS)
def test_errors(line: str, message: str) -> None:
    assert error_of(args(line)) == message


def test_error_reply_is_one_line_of_the_clients_bytes() -> None:
    with pytest.raises(CommandError) as info:
        check_command([b"f\r\no\xff", b"a\nb"])
    assert (
        info.value.reply == b"-ERR unknown command 'f  o\xff', with args beginning with: 'a b' \r\n"
    )


def test_unknown_command_args_are_cut_at_128_bytes() -> None:
    msg = error_of([b"nope", b"x" * 200, b"y"])
    assert msg == "ERR unknown command 'nope', with args beginning with: '" + "x" * 128 + "' "


def test_expire_overflow_with_clock() -> None:
    near = 2**63 - 1 - NOW
    assert error_of([b"PEXPIRE", b"k", str(near).encode()]) is None
    assert error_of([b"PEXPIRE", b"k", str(near + 1).encode()]) == (
        "ERR invalid expire time in 'pexpire' command"
    )


def test_table_rows_are_consistent() -> None:
    for spec in COMMANDS.values():
        assert spec.name == spec.name.lower()
        assert spec.arity != 0 and spec.summary and spec.since.count(".") == 2
        for sub in spec.subcommands:
            assert sub.name.startswith(spec.name + "|")
    assert len(COMMANDS) == 62


def test_command_info_and_docs_encode() -> None:
    entry = command_info((b"mset",))[0]
    assert entry[:2] == [b"mset", -3] and entry[3:6] == [1, -1, 2]
    assert command_info((b"nope",)) == [None]
    assert command_info((b"client|setname",))[0][0] == b"client|setname"
    assert len(command_info()) == len(COMMANDS)
    docs = command_docs((b"set", b"nope"))
    assert list(docs) == ["set"]
    names = [a["name"] for a in docs["set"]["arguments"]]
    assert names[:2] == ["key", "value"]
    assert command_docs((b"mget",))["mget"]["arguments"] == [
        {"name": "key", "type": "key", "key_spec_index": 0, "flags": ["multiple"]}
    ]
    for proto in (2, 3):
        assert encode(command_info(), proto).startswith(b"*62\r\n")
        assert encode(command_docs(), proto)


DOC = Path(__file__).resolve().parents[2] / "docs" / "redis.md"


def test_doc_table_matches_the_command_table() -> None:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 6 and cells[-1].endswith("served"):
            assert cells[-1] == "served", line  # the server serves every row of the table
            rows[cells[0].strip("`").lower().replace(" ", "|")] = (int(cells[1]), cells[4])
    expected = {}
    for spec in COMMANDS.values():
        for row in (spec, *spec.subcommands):
            expected[row.name] = (row.arity, row.since)
    assert rows == expected


@pytest.mark.parametrize(
    "module",
    ["protocol.redis_commands", "protocol._redis_args", "protocol._redis_table", "protocol._resp_reader",
     "protocol._resp_writer", "protocol._glob", "protocol.resp_dialect"],
)  # fmt: skip
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# -- against a real redis-server ---------------------------------------------------------

# errors that depend on the state of the server, not on the arguments: the parser
# accepts these argv and the executor answers them (or, for SETINFO, Redis 7.0 predates it)
RUNTIME_ERRORS = (
    "ERR EXEC without MULTI",
    "ERR DISCARD without MULTI",
    "ERR no such key",
    "ERR AUTH <password> called without any password",
    "WRONGPASS",
    "ERR DB index is out of range",
    "ERR value is not an integer or out of range",  # only for INCR-like on a non-integer value
    "ERR value is not a valid float",
    "ERR An LFU maxmemory policy is not selected",  # OBJECT FREQ of a key that exists
    "ERR increment would produce NaN or Infinity",
    "ERR increment or decrement would overflow",
    "ERR unknown subcommand 'setinfo'",
    "ERR invalid expire time in 'getex' command",
)
VALUE_DEPENDENT = {"incr", "decr", "incrby", "decrby", "incrbyfloat"}


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as port:
        yield port


def redis_error(port: int, argv: list[bytes]) -> str | None:
    conn = RedisConnection(port)
    try:
        conn.call([b"SET", b"n", b"5"])
        reply = conn.call(argv)
    finally:
        conn.close()
    return reply[1:-2].decode("latin-1") if reply.startswith(b"-") else None


def compare(port: int, argv: list[bytes]) -> None:
    ours = error_of(argv, now_ms=NOW)
    theirs = redis_error(port, argv)
    if ours is None and theirs is not None:
        name = argv[0].decode("latin-1").lower()
        runtime = theirs.startswith(RUNTIME_ERRORS)
        if theirs.startswith(("ERR value is not an integer", "ERR value is not a valid float")):
            runtime = name in VALUE_DEPENDENT and argv[1] != b"n"
        assert runtime, (argv, theirs)
        return
    assert ours == theirs, argv


CURATED = [line for line, _ in ERRORS + PARSED if "SETINFO" not in line] + [
    "SELECT -1", "SELECT 16", "SELECT 01", "SCAN \" 1\"", "SCAN 0 TYPE", "SCAN 0 type zz",
    "HELLO x", "HELLO 3 FOO", "CLIENT", "CONFIG GET", "COMMAND FOO", "COMMAND COUNT x",
    "INCRBYFLOAT n 0x10", "INCRBYFLOAT n 1e400", "GETEX n PERSIST EX 1", "GETEX n NX",
    "GETEX n EX 0", "GETEX n EXAT 9223372036854775807", "PING a b", "EXPIREAT k -5",
    "SET k v PXAT 0", "EXPIRE k x", "EXPIRE k 1 nx gt", "INFO a b c", "COMMAND INFO",
    "COMMAND DOCS", "FLUSHDB ASYNC x", "RENAME a", "WATCH", "TTL", "KEYS", "KEYS a b",
    "EXEC k", "EXISTS", "DBSIZE x", "TIME x", "INCRBY n 9223372036854775808",
    "SETNX k", "INCRBYFLOAT n +5", "INCRBYFLOAT n 5.", "INCRBYFLOAT n ' 5'", "INCRBYFLOAT n -inf",
    "OBJECT", "OBJECT ENCODING", "OBJECT ENCODING k x", "OBJECT FREQ k", "OBJECT nope k",
    "MEMORY", "MEMORY USAGE", "MEMORY USAGE k SAMPLES", "MEMORY USAGE k SAMPLES -1",
    "MEMORY USAGE k SAMPLES x", "MEMORY USAGE k SAMPLES 0 SAMPLES 5", "MEMORY USAGE k FOO",
    "MEMORY nope", "READONLY", "READONLY x", "READWRITE", "CLUSTER", "CLUSTER INFO",
    "CLUSTER SLOTS x", "CLUSTER SHARDS", "CLUSTER nope",
]  # fmt: skip


@pytest.mark.parametrize("line", CURATED)
def test_curated_against_redis(redis_port: int, line: str) -> None:
    compare(redis_port, [w.encode() for w in line.replace("' 5'", "\x00").split(" ")])


REDIS_KEY_SPEC_FLAGS = {
    "RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key", "incomplete",
    "variable_flags",
}  # fmt: skip


def test_table_matches_redis_command_info(redis_port: int) -> None:
    conn = RedisConnection(redis_port)
    try:
        for spec in COMMANDS.values():
            for row in (spec, *spec.subcommands):
                if row.name in ("client|setinfo", "client|no-touch"):  # Redis 7.2: not in 7.0
                    continue
                info = parse_reply(conn.call([b"COMMAND", b"INFO", row.name.encode()]))
                assert isinstance(info, list) and isinstance(info[0], list), row.name
                name, arity, flags, first, last, step = info[0][:6]
                assert isinstance(flags, list)
                theirs = (name, arity, sorted(f.decode() for f in flags), first, last, step)
                ours = (row.name.encode(), row.arity, sorted(row.flags), row.first_key,
                        row.last_key, row.step)  # fmt: skip
                assert ours == theirs
                # ACL categories as Redis's (DBSIZE, TIME, INFO, COMMAND were @admin;
                # KEYS, FLUSHDB, FLUSHALL, INFO lacked @dangerous) and key-spec flags in
                # Redis's spelling (`RO`, `access`: ours said ACCESS, UPDATE)
                entry = command_info((row.name.encode(),))[0]
                assert sorted(entry[6]) == sorted(c.decode() for c in info[0][6]), row.name
                their_specs = info[0][8]
                for k, key_spec in enumerate(entry[8]):
                    fields = their_specs[k]
                    theirs_by_name = dict(zip(fields[::2], fields[1::2], strict=True))
                    their_flags = {f.decode() for f in theirs_by_name[b"flags"]}
                    # Redis's flags are finer (OW, insert, ...): ours are in its vocabulary
                    assert key_spec["flags"] <= REDIS_KEY_SPEC_FLAGS, row.name
                    if not row.is_write:  # STRLEN, EXISTS, TTL...: Redis has no `access`
                        assert key_spec["flags"] - {"access"} <= their_flags, row.name
                if "|" not in row.name:
                    docs = parse_reply(conn.call([b"COMMAND", b"DOCS", row.name.encode()]))
                    assert isinstance(docs, list) and isinstance(docs[1], list)
                    fields = dict(zip(docs[1][::2], docs[1][1::2], strict=True))
                    assert fields[b"since"] == row.since.encode(), row.name
                    assert fields[b"group"] == row.group.encode(), row.name
    finally:
        conn.close()


WORDS = [
    b"k", b"n", b"v", b"1", b"0", b"-1", b"010", b"x", b"NX", b"xx", b"GT", b"lt", b"EX",
    b"px", b"EXAT", b"PXAT", b"KEEPTTL", b"GET", b"PERSIST", b"MATCH", b"COUNT", b"TYPE",
    b"9223372036854775807", b"1.5", b"inf", b"", b"ASYNC", b"SETNAME", b"AUTH", b"3",
]  # fmt: skip
NAMES = sorted(
    {n for n in COMMANDS if n not in ("quit", "auth", "client", "flushall", "flushdb")}
    | {"client", "nosuch"}
)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(NAMES),
    rest=st.lists(st.sampled_from(WORDS), max_size=5),
    upper=st.booleans(),
)
def test_random_commands_against_redis(
    redis_port: int, name: str, rest: list[bytes], upper: bool
) -> None:
    argv = [name.upper().encode() if upper else name.encode(), *rest]
    if name == "client" and rest[:1] and rest[0].lower() in (b"setinfo", b"kill", b"pause"):
        return
    compare(redis_port, argv)
