"""The Redis dialect against a real bitcask-server, driven by redis-py (docs/redis.md).

Every test starts its own server on free loopback ports; redis-py connects with a
socket timeout, so no call can hang.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tests.serverproc import ServerProcess

TIMEOUT = 10.0


def _client(srv: ServerProcess, **kwargs: object) -> redis.Redis:
    """redis-py (RESP2 unless protocol=3 is given: redis-py 8 would say HELLO 3)."""
    kwargs.setdefault("protocol", 2)
    return redis.Redis(
        host=srv.host,
        port=srv.port,
        socket_timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def srv(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(srv: ServerProcess, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    client = _client(srv, protocol=request.param)
    yield client
    client.close()


def _raw(srv: ServerProcess, data: bytes, until: bytes) -> bytes:
    """Send raw bytes, read until `until` ends the reply (or the peer closes)."""
    with socket.create_connection((srv.host, srv.port), TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        s.sendall(data)
        got = b""
        while not got.endswith(until):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


def test_connection_commands(r: redis.Redis) -> None:
    assert r.ping() is True
    assert r.echo(b"hi there") == b"hi there"
    assert r.execute_command("SELECT", 0) in (True, b"OK")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 1)
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in ("worker-1", b"worker-1")
    assert isinstance(r.client_id(), int)
    assert r.dbsize() == 0
    secs, micros = r.time()
    assert abs(secs - time.time()) < 60 and 0 <= micros < 1_000_000
    assert r.config_get("maxmemory") == {"maxmemory": "0"}
    assert r.config_get("MAXMEMORY") == {"MAXMEMORY": "0"}  # as spelled, as Redis
    assert r.command_count() > 40
    table = r.command()  # COMMAND: every command, as redis-py parses it
    assert table["get"]["arity"] == 2 and table["set"]["arity"] == -3
    assert r.info("keyspace") == {}
    server = r.info("server")
    assert server["redis_version"].startswith("7.")
    # every INFO value is a number or a word, as in Redis (total_commands_processed
    # was once the repr of a per-command dict)
    # role is what health checks and exporters read; the section was missing
    assert r.info("replication") == {"role": "master", "connected_slaves": 0}
    assert isinstance(r.info("cpu")["used_cpu_user"], float)
    for section in ("server", "clients", "memory", "persistence", "stats", "cpu"):
        for name, value in r.info(section).items():
            assert isinstance(value, int | float | str), (name, value)
    stats = r.info("stats")
    assert isinstance(stats["total_commands_processed"], int)
    assert stats["total_commands_processed"] >= 10


def test_unknown_command_is_an_error_and_the_connection_goes_on(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCH'"):
        r.execute_command("NOSUCH", "a")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        r.execute_command("GET")
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"


def test_set_and_its_options(r: redis.Redis) -> None:
    assert r.set("k", "v1") is True
    assert r.set("k", "v2", nx=True) is None
    assert r.set("new", "x", xx=True) is None
    assert r.set("k", "v3", xx=True, get=True) == b"v1"
    assert r.get("k") == b"v3"
    assert r.set("t", "x", ex=100) is True
    assert 95 <= r.ttl("t") <= 100
    assert r.set("t", "y", keepttl=True) is True
    assert r.ttl("t") > 0
    assert r.set("t", "z") is True
    assert r.ttl("t") == -1
    assert r.set("p", "x", px=100_000) is True
    assert 95_000 < r.pttl("p") <= 100_000
    at = int(time.time()) + 1000
    assert r.set("a", "x", exat=at) is True
    assert r.expiretime("a") == at
    assert r.set("a", "x", pxat=at * 1000 + 5) is True
    assert r.pexpiretime("a") == at * 1000 + 5
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set'"):
        r.execute_command("SET", "k", "v", "EX", "0")
    assert r.setnx("k", "no") is False
    assert r.setnx("fresh", "yes") is True
    assert r.getset("fresh", "again") == b"yes"
    assert r.execute_command("SETEX", "se", 50, "v") in (True, b"OK")
    assert 45 <= r.ttl("se") <= 50
    assert r.psetex("pse", 50_000, "v") is True
    assert r.getdel("pse") == b"v"
    assert r.getdel("pse") is None
    assert r.get("missing") is None


def test_counters_append_and_strlen(r: redis.Redis) -> None:
    assert r.incr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decr("n") == 10
    assert r.decrby("n", 3) == 7
    assert r.incrbyfloat("f", 10.5) == 10.5
    assert r.incrbyfloat("f", 0.1) == pytest.approx(10.6)
    assert r.get("f") == b"10.6"
    r.set("s", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
        r.incr("s")
    r.set("big", str(2**63 - 1))
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.incr("big")
    assert r.append("s", "def") == 6
    assert r.append("new", "xy") == 2
    assert r.strlen("s") == 6
    assert r.strlen("nothing") == 0


def test_keys_and_expiry(r: redis.Redis) -> None:
    r.mset({"a": "1", "b": "2", "c": "3"})
    assert r.mget("a", "b", "zz") == [b"1", b"2", None]
    assert r.exists("a", "b", "zz", "a") == 3
    assert r.delete("a", "a", "zz") == 1
    assert r.unlink("b") == 1
    assert r.type("c") == b"string"
    assert r.type("a") == b"none"
    assert r.msetnx({"c": "x", "d": "y"}) is False
    assert r.get("d") is None
    assert r.msetnx({"d": "y", "e": "z"}) is True
    assert r.expire("c", 100) is True
    assert r.expire("c", 50, nx=True) is False
    assert r.expire("c", 200, gt=True) is True
    assert r.expire("c", 300, lt=True) is False
    assert r.expire("nothing", 10) is False
    assert r.pexpire("d", 100_000, xx=True) is False
    assert r.persist("c") is True
    assert r.persist("c") is False
    assert r.ttl("c") == -1
    assert r.ttl("nothing") == -2
    assert r.expireat("e", int(time.time()) - 10) is True  # in the past: deleted
    assert r.exists("e") == 0
    assert r.rename("c", "c2") is True
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.rename("c", "c3")
    assert r.renamenx("c2", "d") is False
    assert r.getex("d", ex=100) == b"y"
    assert r.ttl("d") > 0
    assert r.getex("d", persist=True) == b"y"
    assert r.ttl("d") == -1
    assert r.dbsize() == 2
    info = r.info("keyspace")
    assert info["db0"]["keys"] == 2


def test_scan_keys_randomkey_and_flush(r: redis.Redis) -> None:
    r.mset({f"user:{i}": str(i) for i in range(250)})
    r.mset({f"item:{i}": str(i) for i in range(50)})
    assert {k.decode() for k in r.scan_iter(match="user:*", count=37)} == {
        f"user:{i}" for i in range(250)
    }
    assert len(set(r.scan_iter(count=1000))) == 300
    assert sorted(r.keys("item:1?")) == sorted(f"item:{i}".encode() for i in range(10, 20))
    assert r.randomkey() is not None
    assert r.scan(0, _type="hash") == (0, [])
    assert r.flushdb() is True
    assert r.dbsize() == 0
    assert r.randomkey() is None
    r.set("x", "1")
    assert r.flushall() is True
    assert r.keys() == []


def test_a_scan_sent_again_answers_the_same_page(r: redis.Redis) -> None:
    # A client that retries a SCAN whose reply it lost sends the same cursor again.
    # Redis's cursors are stateless; ours were forgotten once used, so the retry
    # answered (0, []) and the iteration ended with 8 of 10 keys, without a word.
    r.mset({f"k{i}": "v" for i in range(10)})
    cursor, first = r.scan(0, count=2)
    again = r.scan(cursor, count=2)
    once_more = r.scan(cursor, count=2)
    assert once_more[1] == again[1] and len(again[1]) == 2  # the same keys
    assert again[0] != 0 and once_more[0] != 0  # and a cursor that goes on
    seen = set(first)
    while cursor:
        cursor, page = r.scan(cursor, count=2)
        assert r.scan(0, count=1)  # other iterations meanwhile change nothing
        seen.update(page)
    assert seen == {f"k{i}".encode() for i in range(10)}


def test_pipeline_reads_its_own_writes(r: redis.Redis) -> None:
    with r.pipeline(transaction=False) as p:
        for i in range(500):
            p.set(f"k{i}", i)
            p.incr(f"k{i}")
            p.get(f"k{i}")
        out = p.execute()
    assert out[2::3] == [str(i + 1).encode() for i in range(500)]


def test_transaction_is_one_batch(r: redis.Redis) -> None:
    with r.pipeline(transaction=True) as p:
        p.set("a", 1).incr("a").get("a").exists("a", "zz").ttl("a")
        assert p.execute() == [True, 2, b"2", 1, -1]


def test_watch_aborts_exec_after_another_connections_write(srv: ServerProcess) -> None:
    a, b = _client(srv), _client(srv)
    try:
        with a.pipeline() as p:
            p.watch("k")
            b.set("k", "1")
            b.delete("k")  # the key is as it was: still a write, EXEC answers nil
            p.multi()
            p.set("k", "mine")
            with pytest.raises(redis.WatchError):
                p.execute()
        assert a.get("k") is None
        with a.pipeline() as p:  # untouched watch: EXEC applies
            p.watch("k")
            p.multi()
            p.set("k", "mine")
            assert p.execute() == [True]
        assert b.get("k") == b"mine"
    finally:
        a.close()
        b.close()


def test_queued_error_aborts_exec(srv: ServerProcess) -> None:
    got = _raw(
        srv,
        b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"
        b"*1\r\n$6\r\nNOSUCH\r\n*1\r\n$4\r\nEXEC\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
        until=b"$-1\r\n",
    )
    assert got == (
        b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    )


def test_resp3(srv: ServerProcess) -> None:
    client = _client(srv, protocol=3)
    try:
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        assert client.get("none") is None
        assert client.config_get("databases") == {"databases": "1"}
        hello = client.execute_command("HELLO", 3)
        assert hello[b"proto"] == 3
        assert client.incrbyfloat("f", 1.5) == 1.5
    finally:
        client.close()
    got = _raw(srv, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", b"_\r\n")
    assert got.startswith(b"%7\r\n") and got.endswith(b"_\r\n")


def test_quit_and_protocol_errors_close(srv: ServerProcess) -> None:
    assert _raw(srv, b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n", b"\r\n") == b"+OK\r\n"
    got = _raw(srv, b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n", b"length\r\n")
    assert got == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"


def test_a_huge_aggregate_header_does_not_stall_other_clients(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # hiredis's reader (the `fast` extra) built a 2**31-slot list for a nested RESP3
    # push header before any element came: 19 bytes from a client that had not
    # authenticated kept the server's loop busy for about a minute (a 13-byte
    # `*2147483647` for 4-6 s). Such headers now go to the pure reader: its error
    # at once, and every other client is answered meanwhile.
    srv = server_factory(sync="never", extra=["--auth", "s3cret"])
    got = _raw(srv, b"*1\r\n>2147483647\r\n", until=b"\r\n")
    assert got == b"-ERR Protocol error: expected '$', got '>'\r\n"
    with socket.create_connection((srv.host, srv.port), TIMEOUT) as hold:
        hold.sendall(b"*2147483647\r\n")  # an incomplete request that stays open
        assert _raw(srv, b"PING\r\n", until=b"\r\n") == b"-NOAUTH Authentication required.\r\n"
    good = _client(srv, password="s3cret")
    try:
        assert good.ping() is True
    finally:
        good.close()


def test_auth(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--auth", "s3cret"])
    got = _raw(
        srv,
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n"
        b"*3\r\n$4\r\nAUTH\r\n$7\r\nsomeone\r\n$6\r\ns3cret\r\n"
        b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n"
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        until=b"$-1\r\n",
    )
    wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert got == b"-NOAUTH Authentication required.\r\n" + wrongpass * 2 + b"+OK\r\n$-1\r\n"
    anon = _client(srv)
    try:
        with pytest.raises(redis.AuthenticationError):
            anon.get("k")
    finally:
        anon.close()
    for protocol in (2, 3):  # AUTH, and HELLO 3 AUTH default <password>
        good = _client(srv, password="s3cret", protocol=protocol)
        try:
            assert good.set("k", "v") is True
            assert good.get("k") == b"v"
        finally:
            good.close()


def test_max_keys_answers_oom(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--max-keys", "2"])
    client = _client(srv)
    try:
        client.set("a", "1")
        client.set("b", "2")
        with pytest.raises(redis.ResponseError, match="command not allowed when used memory"):
            client.set("c", "3")
        assert client.set("a", "overwrite") is True  # overwrites and deletes go on
        assert client.delete("b") == 1
        assert client.set("c", "3") is True
    finally:
        client.close()


def test_acknowledged_writes_survive_sigkill(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always")
    client = _client(srv)
    with client.pipeline(transaction=False) as p:
        for i in range(300):
            p.set(f"k{i}", f"v{i}")
        p.incrby("n", 300)
        assert all(p.execute())
    client.close()
    srv.kill()  # SIGKILL: no shutdown, no final sync
    srv.start()
    client = _client(srv)
    try:
        assert client.mget([f"k{i}" for i in range(300)]) == [f"v{i}".encode() for i in range(300)]
        assert client.get("n") == b"300"
    finally:
        client.close()


def test_read_modify_write_is_atomic_across_connections(srv: ServerProcess) -> None:
    """INCR, APPEND and SETNX from several connections at once: none is lost or doubled
    (each is decided inside the one writer, never get-then-put)."""
    clients = [_client(srv) for _ in range(4)]

    def work(c: redis.Redis, n: int) -> list[Any]:
        with c.pipeline(transaction=False) as p:
            for i in range(250):
                p.incr("counter")
                p.append("log", "x")
                p.setnx(f"once:{i}", n)
            return p.execute()

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            results = list(pool.map(work, clients, range(len(clients))))
        assert clients[0].get("counter") == b"1000"
        assert clients[0].strlen("log") == 1000
        won = [sum(1 for r in res[2::3] if r) for res in results]
        assert sum(won) == 250  # each once:i set by exactly one connection
        counters = sorted(v for res in results for v in res[0::3])
        assert counters == list(range(1, 1001))  # every INCR saw a distinct value
    finally:
        for c in clients:
            c.close()


def test_reset_forgets_the_connection_state(srv: ServerProcess) -> None:
    got = _raw(
        srv,
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$5\r\nWATCH\r\n$1\r\nk\r\n*1\r\n$5\r\nMULTI\r\n"
        b"*1\r\n$5\r\nRESET\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n"
        b"*2\r\n$5\r\nWATCH\r\n$1\r\nk\r\n*2\r\n$4\r\nECHO\r\n$3\r\nend\r\n",
        until=b"$3\r\nend\r\n",
    )
    assert got.endswith(b"+OK\r\n+RESET\r\n$-1\r\n-ERR EXEC without MULTI\r\n+OK\r\n$3\r\nend\r\n")


def test_append_past_max_value_size_answers_redis_text_however_it_races(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Two pipelined APPENDs: the second passes the size hint (read before the first
    # applied) and was refused by the writer with the engine's own words
    # ("value of 151 bytes exceeds max_value_size 100"); inside MULTI, or when the
    # first had applied, the same APPEND answered Redis's text. One text now.
    srv = server_factory(sync="never", extra=["--max-value-size", "100"])
    too_big = b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    got = _raw(
        srv, b"APPEND a %s\r\nAPPEND a %s\r\nSTRLEN a\r\n" % (b"x" * 71, b"y" * 80), b":71\r\n"
    )
    assert got == b":71\r\n" + too_big + b":71\r\n"
    got = _raw(srv, b"MULTI\r\nAPPEND a %s\r\nEXEC\r\n" % (b"z" * 30), b"\r\n*1\r\n" + too_big)
    assert got.endswith(b"+QUEUED\r\n*1\r\n" + too_big)


def test_get_and_plain_set_answer_as_the_general_path_does(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # GET k and SET k v take server/_redis.py's fast path; the same command with an
    # option (or in MULTI) takes the general one: limits and errors must agree.
    srv = server_factory(sync="never", extra=["--max-key-size", "8", "--max-value-size", "16"])
    long_key, long_value = b"k" * 9, b"v" * 17
    pairs = [
        (f"SET {long_key.decode()} v\r\n", f"SET {long_key.decode()} v XX\r\n"),
        (f"SET k {long_value.decode()}\r\n", f"SET k {long_value.decode()} XX\r\n"),
        (f"GET {long_key.decode()}\r\n", f"GETEX {long_key.decode()}\r\n"),
    ]
    for fast, general in pairs:
        got_fast = _raw(srv, fast.encode(), b"\r\n")
        got_general = _raw(srv, general.encode(), b"\r\n")
        assert got_fast.startswith(b"-ERR ") and got_fast == got_general, (fast, got_fast)
    assert _raw(srv, b"SET k v\r\nGET k\r\nGET nope\r\n", b"$-1\r\n") == (
        b"+OK\r\n$1\r\nv\r\n$-1\r\n"
    )
    assert _raw(srv, b"HELLO 3\r\nGET nope\r\n", b"_\r\n").endswith(b"_\r\n")
    assert _raw(srv, b"MULTI\r\nSET k w\r\nGET k\r\nEXEC\r\n", b"$1\r\nw\r\n").endswith(
        b"+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\nw\r\n"
    )
    authed = server_factory(sync="never", extra=["--auth", "secret"])
    assert _raw(authed, b"SET k v\r\n", b"\r\n").startswith(b"-NOAUTH ")
    assert _raw(authed, b"GET k\r\n", b"\r\n").startswith(b"-NOAUTH ")


@pytest.mark.parametrize(("idle", "answer"), [("0", "0"), ("0.5", "1"), ("300", "300")])
def test_config_get_timeout_rounds_up_never_to_never(
    server_factory: Callable[..., ServerProcess], idle: str, answer: str
) -> None:
    # Redis keeps whole seconds and reads "0" as never: --idle-timeout 0.5 answered
    # "0", which told a client's pool that idle connections are never closed.
    client = _client(server_factory(sync="never", extra=["--idle-timeout", idle]))
    try:
        assert client.config_get("timeout") == {"timeout": answer}
    finally:
        client.close()
