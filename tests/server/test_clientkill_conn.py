"""CLIENT KILL on bitcask-server alone: what a killed connection's pipeline leaves
behind, MAXAGE (Redis 7.4's filter), redis-py's helpers, and the dispatcher's side
with recording links (docs/redis.md, section 8).

Real servers on free loopback ports, every socket with a timeout; the in-process
part uses a real store and writer, with links that record their close.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import bitcask
from server._metrics import Metrics
from server._outcome import Done
from server._redis import RedisDispatcher
from server._redis_session import ClientLink, RedisSession, redis_addr
from server._writer import Writer
from server.config import ServerConfig
from tests.protocol._redis_server import IO_TIMEOUT, RedisConnection, split_replies
from tests.server.test_clientkill_diff import _until_closed
from tests.serverproc import ServerProcess

N = 3000  # SETs pipelined by the connection that is killed


def _set(i: int) -> bytes:
    key, value = b"k%d" % i, b"v%d" % i
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)


def test_killing_another_connection_mid_pipeline(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Few requests in flight per connection and an fsync per group: the killed
    # connection still has writes in flight and events in its backlog at the kill.
    srv = server_factory(sync="always", extra=["--max-inflight", "4"])
    victim, killer, bystander = (RedisConnection(srv.port) for _ in range(3))
    assert bystander.call([b"SET", b"other", b"1"]) == b"+OK\r\n"
    me = victim.call([b"CLIENT", b"ID"])[1:-2]
    victim.sock.sendall(b"".join(_set(i) for i in range(N)))
    assert victim.sock.recv(5) == b"+OK\r\n"  # the server is working through them
    assert killer.call([b"CLIENT", b"KILL", b"ID", me]) == b":1\r\n"
    with contextlib.suppress(OSError):  # sent after the kill: dropped unread, never run
        victim.sock.sendall(_set(N) * 100)
    replies = split_replies(b"+OK\r\n" + _until_closed(victim.sock))
    answered = len(replies)
    assert set(replies) == {b"+OK\r\n"}  # no error, no reply cut short
    # every write it was answered for is there for everyone, nothing after them is
    get = [bystander.call([b"GET", b"k%d" % i]) for i in range(N + 1)]
    assert get[:answered] == [b"$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i in range(answered)]
    assert set(get[answered:]) <= {b"$-1\r\n"}
    assert bystander.call([b"DBSIZE"]) == b":%d\r\n" % (answered + 1)
    # the others saw nothing of it
    assert killer.call([b"PING"]) == b"+PONG\r\n"
    assert bystander.call([b"GET", b"other"]) == b"$1\r\n1\r\n"
    listed = killer.call([b"CLIENT", b"LIST"])
    assert b"id=%b " % me not in listed and listed.count(b"\nid=") == 2
    for c in (victim, killer, bystander):
        c.close()


def _connected(r: redis.Redis) -> int:
    return int(r.info("clients")["connected_clients"])


def test_killed_connection_that_reads_nothing_is_closed_anyway(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Its replies fill the socket buffers and stay there: waiting for them to go out
    # held the connection (and its slot) until --idle-timeout, 300 s by default.
    srv = server_factory(sync="never", extra=["--max-value-size", str(2 << 20)])
    admin = redis.Redis(port=srv.port, socket_timeout=IO_TIMEOUT)
    admin.set("big", b"x" * (1 << 20))
    victim = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
    victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    victim.sendall(b"CLIENT ID\r\n" + b"GET big\r\n" * 200)  # 200 MiB of replies, unread
    deadline = time.monotonic() + IO_TIMEOUT
    while len(admin.client_list()) != 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the victim's first command ran: it is a Redis connection
    assert _connected(admin) == 2
    assert admin.client_kill_filter(skipme=True) == 1
    while _connected(admin) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connected(admin) == 1
    assert [c["id"] for c in admin.client_list()] == [str(admin.client_id())]
    assert admin.strlen("big") == 1 << 20
    victim.close()
    admin.close()


def test_redis_py_client_kill_and_client_kill_filter(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    admin = redis.Redis(port=srv.port, socket_timeout=IO_TIMEOUT, client_name="admin")
    others = [
        redis.Redis(port=srv.port, socket_timeout=IO_TIMEOUT, client_name=f"c{i}") for i in range(3)
    ]
    for r in others:
        assert r.ping()
    by_name = {c["name"]: c for c in admin.client_list()}
    assert {"admin", "c0", "c1", "c2"} <= set(by_name)
    assert admin.client_kill(by_name["c0"]["addr"]) is True
    assert admin.client_kill_filter(_id=by_name["c1"]["id"]) == 1
    assert admin.client_kill_filter(laddr=by_name["c2"]["laddr"], skipme=True) == 1
    with pytest.raises(redis.ResponseError, match="No such client"):
        admin.client_kill(by_name["c0"]["addr"])
    assert {c["name"] for c in admin.client_list()} == {"admin"}
    assert admin.client_kill_filter(_type="normal", skipme=False) == 1  # itself
    # redis-py reconnects: the new connection has a new id and address
    assert admin.ping() and admin.client_id() != int(by_name["admin"]["id"])
    for r in (*others, admin):
        r.close()


# ---- the dispatcher's side, in process ----


class _Link:
    """A connection as the session sees it: its ClientLink records each close."""

    def __init__(self, addr: str) -> None:
        self.closes = 0
        self.link = ClientLink(addr, "127.0.0.1:6379", 9, self.close)

    def close(self) -> None:
        self.closes += 1


def _kill(d: RedisDispatcher, s: RedisSession, *args: bytes) -> bytes:
    out = d.call(s, "client", [b"CLIENT", b"KILL", *args])
    assert isinstance(out, Done) and out.error is None, out.error
    return out.result  # type: ignore[no-any-return]


async def test_maxage_and_what_a_killed_session_runs(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path / "db", sync="never")
    try:
        d = RedisDispatcher(
            db,
            Writer(db, mode="loop", metrics=Metrics()),
            ServerConfig(data=tmp_path / "db", port=0, http_port=0),
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            info=dict,
        )
        links = [_Link(f"10.0.0.{i}:5000") for i in range(3)]
        s = [d.new_session(x.link) for x in links]
        assert s[0].describe().startswith(f"id={s[0].id} addr=10.0.0.0:5000 ")
        assert "laddr=127.0.0.1:6379 fd=9 name=" in s[0].describe()
        s[1].created -= 100.0  # connected 100 s ago
        assert _kill(d, s[0], b"MAXAGE", b"100") == b":0\r\n"  # not older than 100 s
        assert _kill(d, s[0], b"MAXAGE", b"99") == b":1\r\n"
        assert [x.closes for x in links] == [0, 1, 0]
        # a killed session runs nothing more and answers nothing (not even GET/SET)
        for argv in ([b"GET", b"k"], [b"SET", b"k", b"v"], [b"PING"]):
            out = d.call(s[1], argv[0].decode().lower(), argv)
            assert isinstance(out, Done) and out.result == b"" and out.error is None
        assert _kill(d, s[0], b"ID", str(s[1].id).encode()) == b":0\r\n"  # gone already
        # the old form kills the caller itself; it closes after this reply
        assert _kill(d, s[2], b"10.0.0.2:5000") == b"+OK\r\n"
        assert [x.closes for x in links] == [0, 1, 1]
        assert d.call(s[2], "ping", [b"PING"]).result == b""  # type: ignore[union-attr]
        d.end_session(s[1])  # the connection's end, later: nothing left to release
        listed = d.call(s[0], "client", [b"CLIENT", b"LIST"])
        assert isinstance(listed, Done) and listed.result.count(b"id=") == 1
    finally:
        db.close()


def test_redis_addr_as_redis_prints_it() -> None:
    assert redis_addr(("127.0.0.1", 6379)) == "127.0.0.1:6379"
    assert redis_addr(("::1", 6379, 0, 0)) == "[::1]:6379"
    assert redis_addr(("fe80::1%eth0", 1, 0, 2)) == "[fe80::1%eth0]:1"
    assert redis_addr(None) == redis_addr("/tmp/sock") == ""
