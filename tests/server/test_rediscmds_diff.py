"""COPY, CLIENT LIST/INFO/NO-EVICT/NO-TOUCH, OBJECT REFCOUNT and APPEND's bound against
bitcask-server AND a real redis-server (docs/redis.md, sections 7 and 8).

The same bytes go to both servers, one command at a time, and the raw replies must be
equal; Redis runs with `--databases 1`, the one database this server has. CLIENT
LIST's lines are compared field by field on the fields this server fills. Each test
starts its own servers on free loopback ports; every socket has a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import bitcask
from server._metrics import Metrics
from server._outcome import Done, Write
from server._redis import RedisDispatcher
from server._writer import Writer
from server.config import ServerConfig
from tests.protocol._redis_server import RedisConnection, redis_server
from tests.server.test_redis_tools_diff import _Counting  # counts the values read
from tests.serverproc import ServerProcess

TIMEOUT = 10.0
NOW_MS = int(time.time() * 1000)
TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"  # Redis's words


@pytest.fixture
def ports(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[tuple[int, int]]:
    ours = server_factory(sync="never")
    with redis_server(tmp_path, "--databases", "1") as theirs:
        yield ours.port, theirs


def _line(text: str) -> list[bytes]:
    return [w.encode() for w in text.split()]


def _same(conns: tuple[RedisConnection, RedisConnection], lines: list[str]) -> None:
    for text in lines:
        ours, theirs = (c.call(_line(text)) for c in conns)
        assert ours == theirs, text


def test_copy_answers_and_leaves_every_key_as_redis(ports: tuple[int, int]) -> None:
    conns = (RedisConnection(ports[0]), RedisConnection(ports[1]))
    at = NOW_MS + 3_600_000
    _same(
        conns,
        [
            "SET src hello",
            f"SET ttl v PXAT {at}",
            "SET taken old",
            "COPY src dst",  # 1: a new key
            "COPY src dst",  # 0: dst exists
            "COPY src taken",  # 0: dst exists, kept
            "COPY src taken REPLACE",  # 1
            "COPY nokey dst2",  # 0: nothing to copy
            "COPY ttl ttl2",  # the expiry comes along
            "COPY src src",  # same object
            "COPY src src REPLACE",
            "COPY src x DB 1",  # one database
            "COPY src x DB 0 REPLACE",
            "COPY src x DB",
            "COPY src x DB z",
            "COPY src x DB 99999999999",
            "COPY src x FOO",
            "COPY src x REPLACE REPLACE",
            "COPY src",
            "APPEND src +more",  # the copy is a copy: dst keeps its value
            "MULTI",
            "COPY src inside",
            "GET inside",
            "EXEC",
        ],
    )
    keys = ["src", "dst", "taken", "dst2", "ttl", "ttl2", "x", "inside", "nokey"]
    _same(conns, [f"GET {k}" for k in keys] + [f"PEXPIRETIME {k}" for k in keys] + ["DBSIZE"])
    for c in conns:
        c.close()


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split(" "))


# The fields CLIENT LIST / INFO fills (docs/redis.md, section 8); id, age and idle are
# compared for their form, lib-name and lib-ver are Redis 7.2's (7.0 has none).
SAME_FIELDS = ("name", "flags", "db", "sub", "psub", "ssub", "multi", "cmd", "user", "redir")


def _clients(port: int) -> list[redis.Redis]:
    return [
        redis.Redis(port=port, socket_timeout=TIMEOUT, protocol=proto, client_name=name)
        for proto, name in ((2, "first"), (3, "second"), (2, None))
    ]


def test_client_list_and_info_as_redis(ports: tuple[int, int]) -> None:
    seen: list[list[dict[str, str]]] = []
    infos: list[dict[str, str]] = []
    for port in ports:
        first, second, third = _clients(port)
        assert first.ping() and second.ping() and third.ping()
        third.execute_command("MULTI")
        third.execute_command("SET", "k", "v")
        assert first.execute_command("CLIENT", "NO-EVICT", "on") in (b"OK", "OK", True)
        with pytest.raises(redis.ResponseError, match="syntax error"):
            first.execute_command("CLIENT", "NO-EVICT", "maybe")
        listed = first.execute_command("CLIENT", "LIST")
        text = listed.decode() if isinstance(listed, bytes) else str(listed)
        assert text.endswith("\n")
        lines = [_fields(line) for line in text.splitlines()]
        ids = [int(f["id"]) for f in lines]
        assert ids == sorted(ids) and len(lines) == 3
        for f in lines:
            assert int(f["age"]) >= 0 and int(f["idle"]) >= 0
        info = second.execute_command("CLIENT", "INFO")
        infos.append(_fields((info.decode() if isinstance(info, bytes) else str(info)).strip()))
        # by id, in the order asked, an unknown id left out; TYPE
        one = first.execute_command("CLIENT", "LIST", "ID", ids[2], 999999, ids[0])
        one_text = one.decode() if isinstance(one, bytes) else str(one)
        assert [_fields(x)["id"] for x in one_text.splitlines()] == [str(ids[2]), str(ids[0])]
        assert first.execute_command("CLIENT", "LIST", "TYPE", "pubsub") in (b"", "")
        normal = first.execute_command("CLIENT", "LIST", "TYPE", "NORMAL")
        assert len((normal.decode() if isinstance(normal, bytes) else normal).splitlines()) == 3
        for args, error in (
            (("TYPE", "foo"), "Unknown client type 'foo'"),
            (("ID", "x"), "Invalid client ID"),
            (("FOO",), "syntax error"),
        ):
            with pytest.raises(redis.ResponseError, match=error):
                first.execute_command("CLIENT", "LIST", *args)
        # redis-py's helpers parse the lines
        assert {c["name"] for c in first.client_list()} == {"first", "second", ""}
        assert second.client_info()["name"] == "second"
        third.close()  # leaves the list (the server notices the close shortly)
        deadline = time.monotonic() + TIMEOUT
        while len(first.client_list()) != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {c["name"] for c in first.client_list()} == {"first", "second"}
        seen.append(lines)
        first.close()
        second.close()
    ours, theirs = seen
    for a, b in zip(ours, theirs, strict=True):
        assert {k: a[k] for k in SAME_FIELDS} == {k: b[k] for k in SAME_FIELDS}
    assert {k: infos[0][k] for k in SAME_FIELDS} == {k: infos[1][k] for k in SAME_FIELDS}
    assert infos[0]["resp"] == infos[1]["resp"] == "3"


@pytest.mark.parametrize("value", ["1", "0", "9999", "10000", "-1", "007", "abc", "x" * 50])
def test_object_refcount_as_redis(ports: tuple[int, int], value: str) -> None:
    conns = (RedisConnection(ports[0]), RedisConnection(ports[1]))
    _same(conns, [f"SET k {value}", "OBJECT REFCOUNT k", "OBJECT REFCOUNT nokey"])
    _same(conns, ["OBJECT ENCODING k", "OBJECT nope k", "MEMORY nope", "OBJECT REFCOUNT"])
    for c in conns:
        c.close()


async def test_append_is_bounded_without_reading_the_value(tmp_path: Path) -> None:
    # APPEND's size check read the whole value on the event loop: a 3 MiB read (64 MiB
    # at the default limit) for every APPEND to a large value, refused or not.
    db = bitcask.open(tmp_path / "db", sync="never", max_value_size=4 << 20)
    try:
        db.put(b"big", b"v" * (3 << 20))
        counting = _Counting(db)
        d = RedisDispatcher(
            counting,
            Writer(db, mode="loop", metrics=Metrics()),
            ServerConfig(data=tmp_path / "db", port=0, http_port=0),
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            info=dict,
        )
        s = d.new_session()
        over = d.call(s, "append", [b"APPEND", b"big", b"w" * (1 << 20) + b"!"])
        assert isinstance(over, Done) and over.error is not None
        assert over.error.message == TOO_BIG
        assert isinstance(d.call(s, "append", [b"APPEND", b"big", b"w" * 10]), Write)
        assert counting.reads == 0
        assert db.value_bytes((b"big",)) == 3 << 20  # nothing written yet, nothing lost
    finally:
        db.close()


def test_append_past_the_limit_is_refused_and_changes_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--max-value-size", "1024"])
    r = redis.Redis(port=srv.port, socket_timeout=TIMEOUT, protocol=2)
    other = redis.Redis(port=srv.port, socket_timeout=TIMEOUT, protocol=2)
    r.set("k", "a" * 1000)
    with pytest.raises(redis.ResponseError, match=r"^string exceeds maximum allowed size"):
        r.append("k", "b" * 25)
    assert r.append("k", "b" * 24) == 1024  # up to the limit exactly
    with pytest.raises(redis.ResponseError, match=r"^string exceeds maximum allowed size"):
        r.append("k", "c")
    assert other.get("k") == b"a" * 1000 + b"b" * 24 and other.strlen("k") == 1024
    assert r.ping() and other.dbsize() == 1  # both connections go on
    r.close()
    other.close()


def test_copy_past_max_keys_is_refused_and_changes_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--max-keys", "2"])
    r = redis.Redis(port=srv.port, socket_timeout=TIMEOUT, protocol=2)
    other = redis.Redis(port=srv.port, socket_timeout=TIMEOUT, protocol=2)
    r.set("a", "1")
    r.set("b", "2", px=600_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):  # a third key: --max-keys
        r.copy("a", "c")
    assert r.copy("b", "a", replace=True) is True  # over a present key: no new key
    assert other.mget("a", "b", "c") == [b"2", b"2", None]
    assert 0 < other.pttl("a") <= 600_000 and other.dbsize() == 2
    r.close()
    other.close()
