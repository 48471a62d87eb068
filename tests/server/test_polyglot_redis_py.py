"""redis-py in its other modes against bitcask-server and, side by side, a real
redis-server (docs/redis.md): RESP3 (HELLO 3) replies byte for byte, the hiredis and
pure-Python parsers of both protocol versions, `client_name`, `lib_name`/`lib_version`
(CLIENT SETINFO), `health_check_interval`, `scan_iter(match=, count=, _type=)`, the
`transaction()` helper's WATCH retries, `redis.asyncio` with a pool under concurrent
tasks and cancellations, and what this server refuses (`lock()`'s Lua release,
pubsub): an error the caller sees at once, never a hang.

Both servers start once for the module; Redis with `--databases 1`, the one database
this server has. Every call has a socket timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

from tests.protocol._redis_server import RedisConnection, redis_server
from tests.serverproc import ServerProcess

TIMEOUT = 10.0


@dataclass
class Pair:
    ours: int  # ports
    redis: int


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("polyglot")
    (base / "data").mkdir()
    ours = ServerProcess(data=base / "data", sync="never").start()
    try:
        with redis_server(base, "--databases", "1") as port:
            yield Pair(ours.port, port)
    finally:
        ours.kill()


def _flush(pair: Pair) -> None:
    for port in (pair.ours, pair.redis):
        redis.Redis(port=port, socket_timeout=TIMEOUT).flushall()


# -- 1. RESP3: the same bytes for every command of the table ------------------------------

NOW = int(time.time())
RESP3_SCRIPT = [
    "PING", "PING hi", "ECHO x", "SELECT 0", "CLIENT SETNAME nm", "CLIENT GETNAME",
    "SET a 1", "SET b hello EX 100", "GET a", "GET nokey", "SET a 2 GET", "SET z 1 NX GET",
    "SETNX a 3", "SETEX d 100 v", "PSETEX e 100000 v", "GETSET a 5", "GETDEL e", "GETDEL e",
    "GETEX b", "GETEX nokey", "GETEX b PERSIST", "MGET a nokey b", "MSET f 1 g 2",
    "MSETNX f 1 h 2", "STRLEN b", "STRLEN nokey", "APPEND b !", "INCR a", "DECR a",
    "INCRBY a 10", "DECRBY a 3", "SET c 2.5", "INCRBYFLOAT c 0.1", "INCRBYFLOAT c 1e3",
    "DEL f g", "UNLINK nokey", "EXISTS a a nokey", "TYPE a", "TYPE nokey", "EXPIRE a 100",
    "EXPIRE nokey 100", "PEXPIRE a 200000 GT", "PEXPIRE a 1000 GT", f"EXPIREAT a {NOW + 1000}",
    f"PEXPIREAT a {(NOW + 1000) * 1000}", "PERSIST a", "PERSIST a", "TTL a", "TTL nokey",
    "TTL d", "PTTL nokey", "EXPIRETIME a", "EXPIRETIME nokey", f"EXPIREAT a {NOW + 1000}",
    "EXPIRETIME a", "PEXPIRETIME a", "KEYS nomatch*", "KEYS a", "SCAN 0 MATCH zz* COUNT 10",
    "OBJECT ENCODING a", "OBJECT ENCODING d", "OBJECT ENCODING nokey", "OBJECT FREQ a",
    "OBJECT FREQ nokey", "RENAME b bb", "RENAME nokey x", "RENAMENX bb a", "RENAMENX bb b",
    "MULTI", "GET a", "INCR a", "GET nokey", "EXEC", "EXEC", "DISCARD", "WATCH a", "UNWATCH",
    "MULTI", "DISCARD", "WATCH a", "SET a 9", "MULTI", "GET a", "EXEC", "DBSIZE", "CONFIG GET maxmemory", "CONFIG GET databases",
    "MEMORY USAGE nokey", "READONLY", "CLUSTER INFO", "COMMAND INFO get",
    "FLUSHDB", "DBSIZE", "RESET", "GET nokey",
]  # fmt: skip


def _resp3_replies(port: int) -> list[bytes]:
    conn = RedisConnection(port)
    try:
        conn.call([b"FLUSHALL"])
        conn.call([b"HELLO", b"3"])
        return [conn.call(cmd.encode().split()) for cmd in RESP3_SCRIPT]
    finally:
        conn.close()


def test_resp3_replies_are_redis_s_bytes(pair: Pair) -> None:
    # maps, sets, nulls, null arrays, verbatim strings: the types a RESP3 parser sees.
    # COMMAND INFO get: Redis's key specs are sets where these are arrays (redis.md 8)
    ours, theirs = _resp3_replies(pair.ours), _resp3_replies(pair.redis)
    differ = [(cmd, a, b) for cmd, a, b in zip(RESP3_SCRIPT, ours, theirs, strict=True) if a != b]
    assert [cmd for cmd, _, _ in differ] == ["COMMAND INFO get"], differ
    assert ours[RESP3_SCRIPT.index("GET nokey")] == b"_\r\n"
    assert ours[len(RESP3_SCRIPT) - 1 - RESP3_SCRIPT[::-1].index("EXEC")] == b"_\r\n"  # WATCH
    assert ours[RESP3_SCRIPT.index("CONFIG GET databases")].startswith(b"%1\r\n")
    assert ours[RESP3_SCRIPT.index("COMMAND INFO get")].startswith(b"*1\r\n*10\r\n$3\r\nget\r\n")


# -- 2. redis-py's parsers and connection options -------------------------------------------

PARSERS = [
    pytest.param(2, _HiredisParser, id="resp2-hiredis"),
    pytest.param(2, _RESP2Parser, id="resp2-python"),
    pytest.param(3, _HiredisParser, id="resp3-hiredis"),
    pytest.param(3, _RESP3Parser, id="resp3-python"),
]


def _client(port: int, proto: int, parser: type, **kw: Any) -> redis.Redis:
    pool = redis.ConnectionPool(
        port=port, protocol=proto, parser_class=parser, socket_timeout=TIMEOUT, **kw
    )
    return redis.Redis(connection_pool=pool)


def _tour(r: redis.Redis) -> list[tuple[str, Any]]:
    """A run of redis-py calls; each result, or its error's class and message."""
    out: list[tuple[str, Any]] = []

    def call(name: str, fn: Callable[[], Any]) -> None:
        try:
            out.append((name, fn()))
        except redis.RedisError as exc:
            out.append((name, f"{type(exc).__name__}: {exc}"))

    call("client_getname", r.client_getname)  # client_name= sent CLIENT SETNAME
    call("set ex", lambda: r.set("a", "1", ex=100))
    call("mset", lambda: r.mset({"k1": "v", "k2": "w", "n": "10", "f": "1.5"}))
    call("mget", lambda: r.mget("k1", "nokey", "n"))
    call("scan_iter", lambda: sorted(r.scan_iter(match="k*", count=1, _type="string")))
    call("scan_iter hash", lambda: sorted(r.scan_iter(match="k*", count=1, _type="hash")))
    call("ttl", lambda: r.ttl("a"))
    call("pttl", lambda: 99_000 < r.pttl("a") <= 100_000)
    call("ttl none", lambda: (r.ttl("k1"), r.pttl("nokey")))
    call("expiretime", lambda: r.expiretime("a") >= int(time.time()) + 98)
    call("expiretime none", lambda: (r.expiretime("k1"), r.expiretime("nokey")))
    call("getex px", lambda: r.getex("k1", px=50_000))
    call("pttl after getex", lambda: 0 < r.pttl("k1") <= 50_000)
    call("getex persist", lambda: (r.getex("k1", persist=True), r.ttl("k1")))
    call("rename", lambda: r.rename("k2", "k4"))
    call("renamenx", lambda: r.renamenx("k4", "k1"))
    call("rename missing", lambda: r.rename("nokey", "x"))
    call("object encoding", lambda: [r.object("encoding", k) for k in ("n", "k1", "nokey")])
    call("memory_usage none", lambda: r.memory_usage("nokey"))
    call("incrbyfloat", lambda: r.incrbyfloat("f", 0.25))
    call("exists", lambda: r.exists("a", "nokey", "a"))
    call("type", lambda: (r.type("a"), r.type("nokey")))
    call("setnx", lambda: r.setnx("a", "x"))
    call("set get", lambda: r.set("a", "3", get=True, keepttl=True))
    call("info keyspace", lambda: {k: v["keys"] for k, v in r.info("keyspace").items()})
    call("info server", lambda: sorted(r.info("server").keys() & {"redis_version", "tcp_port"}))
    call("dbsize", r.dbsize)
    call("select 0", lambda: r.execute_command("SELECT", 0))
    call("select 1", lambda: r.execute_command("SELECT", 1))
    call("config_get", lambda: r.config_get("maxmemory"))
    call("incr string", lambda: r.incr("k1"))
    call("wrong arity", lambda: r.execute_command("GET"))
    time.sleep(0.05)  # past health_check_interval: the next call sends PING first
    call("after a health check", lambda: r.get("a"))

    def pipelined() -> list[Any]:
        with r.pipeline(transaction=True) as p:
            return p.set("x", 1).incr("x").get("x").delete("x").execute()

    call("pipeline tx", pipelined)

    def watched(p: redis.client.Pipeline) -> None:
        value = int(p.get("n") or 0)
        p.multi()
        p.set("n", value + 1)

    call("transaction", lambda: (r.transaction(watched, "n"), r.get("n")))
    return out


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize(("proto", "parser"), PARSERS)
def test_redis_py_modes_answer_as_redis(pair: Pair, proto: int, parser: type) -> None:
    _flush(pair)
    options = dict(
        client_name="polyglot", lib_name="tour", lib_version="1.0", health_check_interval=0.01
    )
    runs = []
    for port in (pair.redis, pair.ours):
        r = _client(port, proto, parser, decode_responses=True, **options)
        try:
            runs.append(_tour(r))
        finally:
            r.close()
    theirs, ours = runs
    assert ours == theirs
    assert dict(ours)["scan_iter"] == ["k1", "k2"]


def test_a_scan_cursor_read_as_a_double_comes_back_whole(pair: Pair) -> None:
    # node-redis 4 reads SCAN's cursor as a JavaScript Number (a double): a 62-bit
    # cursor came back rounded, the server did not know it, and the walk ended at 0
    _flush(pair)
    r = redis.Redis(port=pair.ours, socket_timeout=TIMEOUT)
    r.mset({f"s:{i:03}": i for i in range(50)})
    seen: list[bytes] = []
    cursor = 0
    for _ in range(100):
        cursor, keys = r.scan(cursor, count=7)
        seen += keys
        assert int(float(cursor)) == cursor
        cursor = int(float(cursor))
        if cursor == 0:
            break
    assert sorted(seen) == [b"s:%03d" % i for i in range(50)]
    r.close()


# -- 3. the transaction() helper under contention -------------------------------------------


def test_transaction_helper_retries_until_its_watch_holds(pair: Pair) -> None:
    _flush(pair)
    threads, rounds = 4, 25
    retries = [0] * threads

    def worker(index: int) -> None:
        r = redis.Redis(port=pair.ours, socket_timeout=TIMEOUT)
        first = [True]

        def bump(p: redis.client.Pipeline) -> None:
            if not first[0]:
                retries[index] += 1
            first[0] = False
            value = int(p.get("counter") or 0)
            p.multi()
            p.set("counter", value + 1)

        for _ in range(rounds):
            first[0] = True
            r.transaction(bump, "counter")
        r.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not any(t.is_alive() for t in pool)
    r = redis.Redis(port=pair.ours, socket_timeout=TIMEOUT)
    assert r.get("counter") == str(threads * rounds).encode()  # no increment lost
    assert r.keys() == [b"counter"]
    r.close()


# -- 4. redis.asyncio: a pool under concurrent tasks and cancellations ------------------------


async def _async_pool(port: int) -> dict[str, Any]:
    pool = aredis.BlockingConnectionPool(
        port=port, max_connections=8, timeout=TIMEOUT, socket_timeout=TIMEOUT, protocol=3
    )
    r = aredis.Redis(connection_pool=pool)
    try:

        async def worker(i: int) -> int:
            for j in range(30):
                await r.set(f"t:{i}", j)
                assert int(await r.get(f"t:{i}")) == j  # never another command's reply
            return i

        done = await asyncio.gather(*(worker(i) for i in range(16)))
        tasks = [asyncio.create_task(worker(100 + i)) for i in range(16)]
        await asyncio.sleep(0.005)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # every pooled connection answers its own command after the cancellations
        after = await asyncio.gather(*(r.incr(f"c:{i}") for i in range(40)))
        async with r.pipeline(transaction=True) as p:
            p.incr("tx").incr("tx")
            tx = await p.execute()
        keys = sorted(k.decode() for k in await r.keys("t:*"))
        values = {k: int(await r.get(k)) for k in keys}
        return {
            "gathered": done,
            "finished": [x for x in results if isinstance(x, int)],
            "cancelled_or_done": all(isinstance(x, asyncio.CancelledError | int) for x in results),
            "after": after,
            "tx": tx,
            "values": values,
        }
    finally:
        await r.aclose()


def test_asyncio_pool_with_cancelled_tasks(pair: Pair) -> None:
    _flush(pair)
    got = asyncio.run(_async_pool(pair.ours))
    assert got["gathered"] == list(range(16))
    assert got["cancelled_or_done"]
    assert set(got["finished"]) >= {101, 103, 105, 107, 109, 111, 113, 115}
    assert got["after"] == [1] * 40 and got["tx"] == [1, 2]
    # the 16 finished workers left 29; a cancelled one left a value it had written
    for i in range(16):
        assert got["values"][f"t:{i}"] == 29
    for i in got["finished"]:
        assert got["values"][f"t:{i}"] == 29
    assert all(0 <= v <= 29 for v in got["values"].values())


# -- 5. what this server refuses: an error at once ------------------------------------------


@pytest.mark.parametrize(("proto", "parser"), PARSERS)
def test_lock_and_pubsub_are_refused_at_once(pair: Pair, proto: int, parser: type) -> None:
    _flush(pair)
    r = _client(pair.ours, proto, parser)
    try:
        started = time.monotonic()
        lock = r.lock("lk", timeout=5, blocking_timeout=1)
        assert lock.acquire() is True  # SET NX PX: served
        assert lock.locked() and lock.owned()
        # release and extend run Lua (EVALSHA): unknown here, so an error, not a hang
        with pytest.raises(redis.ResponseError, match="unknown command 'EVALSHA'"):
            lock.extend(1)
        with pytest.raises(redis.ResponseError, match="unknown command 'EVALSHA'"):
            lock.release()  # (redis-py forgets its token first: the lock is not owned now)
        assert 0 < r.pttl("lk") <= 5000  # held until its PX runs out, as a lost client's
        # a second lock on the held key waits its blocking_timeout, then gives up
        assert r.lock("lk", timeout=5, blocking_timeout=0.2).acquire() is False
        body = []
        evalsha = pytest.raises(redis.ResponseError, match="unknown command 'EVALSHA'")
        with evalsha, r.lock("lk2", timeout=5, blocking_timeout=1):
            body.append("ran")  # the body runs; leaving the block raises
        assert body == ["ran"]
        sub = r.pubsub()
        sub.subscribe("ch")  # sent; redis-py reads its reply with the first message
        with pytest.raises(redis.ResponseError, match="unknown command 'SUBSCRIBE'"):
            sub.get_message(timeout=TIMEOUT)
        sub.close()
        with pytest.raises(redis.ResponseError, match="unknown command 'PUBLISH'"):
            r.publish("ch", "m")
        r.set("src", "v")
        assert r.copy("src", "dst") is True  # served (tests/server/test_rediscmds_diff.py)
        me = r.client_id()  # CLIENT LIST / INFO: served, parsed by every parser
        assert int(r.client_info()["id"]) == me
        assert me in [int(c["id"]) for c in r.client_list()]
        assert time.monotonic() - started < 5  # the lock's own wait (0.2 s) and no other
        # the connection goes on, and the keys are what the served commands left
        assert r.ping() is True
        assert sorted(r.keys()) == [b"dst", b"lk", b"lk2", b"src"]
        assert r.get("src") == b"v" and r.get("dst") == b"v"
        # by design (redis.md 8): the key's and the value's bytes, not an allocator's
        assert r.memory_usage("src") == len("src") + len("v")
    finally:
        r.close()
