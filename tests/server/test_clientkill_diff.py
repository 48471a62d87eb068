"""CLIENT LIST's addr/laddr/fd and CLIENT KILL against bitcask-server AND a real
redis-server (docs/redis.md, section 8): the same bytes go to both, the replies must
be equal, and each kill must leave the same connections open on both.

Each test starts its own servers on free loopback ports; every socket has a timeout.
MAXAGE is Redis 7.4's (the redis-server 7.0 here answers it "syntax error"): it is
checked on ours alone, in tests/server/test_clientkill_conn.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.protocol._redis_server import IO_TIMEOUT, RedisConnection, redis_server
from tests.server import test_rediscmds_diff
from tests.serverproc import ServerProcess, free_port

ports = test_rediscmds_diff.ports  # the fixture: our server and a redis-server, their ports


def _cmd(*words: str | int) -> list[bytes]:
    return [str(w).encode() for w in words]


def _bulk_text(reply: bytes) -> str:
    """The text of a RESP2 bulk string reply (CLIENT LIST, CLIENT INFO)."""
    head, _, rest = reply.partition(b"\r\n")
    assert head[:1] == b"$", reply
    return rest[: int(head[1:])].decode()


def _fields(line: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in line.split(" ")]  # type: ignore[misc]


def _addr(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _until_closed(sock: socket.socket) -> bytes:
    """Every byte the server sends until it closes (EOF or reset)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _closed(conn: RedisConnection) -> bool:
    """The server closed `conn` (EOF or reset), every reply before it already read."""
    try:
        return conn.sock.recv(1) == b""
    except ConnectionResetError:
        return True


# Redis 7.0's CLIENT LIST fields this server leaves out (buffer and memory figures,
# events); lib-name and lib-ver are Redis 7.2's, which 7.0 does not print.
NOT_HERE = {"qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem"}
NOT_HERE |= {"tot-mem", "events"}
NEWER = ["lib-name", "lib-ver"]


def _info_fields(port: int, host: str = "127.0.0.1") -> tuple[list[tuple[str, str]], socket.socket]:
    sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    conn = RedisConnection.__new__(RedisConnection)
    conn.sock, conn.buf = sock, b""
    return _fields(_bulk_text(conn.call(_cmd("CLIENT", "INFO"))).strip()), sock


def test_client_info_addresses_and_field_order_as_redis(ports: tuple[int, int]) -> None:
    order = []
    for port in ports:
        fields, sock = _info_fields(port)
        with sock:
            got = dict(fields)
            assert got["addr"] == _addr(sock.getsockname())  # the client's end
            assert got["laddr"] == _addr(sock.getpeername())  # the server's end
            assert int(got["fd"]) >= 0
            order.append([name for name, _ in fields])
    ours, theirs = order
    assert ours[:4] == theirs[:4] == ["id", "addr", "laddr", "fd"]
    assert ours == [n for n in theirs if n not in NOT_HERE] + NEWER


def test_ipv6_addresses_print_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # free_port binds IPv4 only: a port free there, tried on ::1
    ours = server_factory(sync="never", host="::1", port=free_port(), http_port=free_port())
    with redis_server(tmp_path, "--bind", "127.0.0.1 ::1") as theirs:
        for port in (ours.port, theirs):
            fields, sock = _info_fields(port, "::1")
            with sock:
                got = dict(fields)
                assert got["addr"] == _addr(sock.getsockname()) and got["addr"].startswith("[::1]:")
                assert got["laddr"] == f"[::1]:{port}"


# Each old-form and filter-form error, and the counts of kills that match nobody.
KILL_ERRORS = [
    "CLIENT KILL",
    "CLIENT KILL 1.2.3.4:5",
    "CLIENT KILL foo",
    "CLIENT KILL id",
    "CLIENT KILL 1.2.3.4:5 extra",
    "CLIENT KILL addr 1.2.3.4:5",
    "CLIENT KILL laddr 1.2.3.4:5",
    "CLIENT KILL id x",
    "CLIENT KILL ID 0",
    "CLIENT KILL id -3",
    "CLIENT KILL id 999999",
    "CLIENT KILL id 1 id 999999",
    "CLIENT KILL id x type",
    "CLIENT KILL bogus 1",
    "CLIENT KILL a b c",
    "CLIENT KILL skipme maybe",
    "CLIENT KILL skipme no skipme",
    "CLIENT KILL type bogus",
    "CLIENT KILL type pubsub",
    "CLIENT KILL type master",
    "CLIENT KILL TYPE replica",
    "CLIENT KILL type slave",
    "CLIENT KILL user nobody",
    "CLIENT KILL user Default",
    "CLIENT KILL user default id 999999",
    "CLIENT KILL type normal skipme yes",
]


def test_kill_errors_and_no_match_as_redis(ports: tuple[int, int]) -> None:
    conns = [RedisConnection(p) for p in ports]
    for text in KILL_ERRORS:
        ours, theirs = (c.call(_cmd(*text.split())) for c in conns)
        assert ours == theirs, text
    for c in conns:  # nothing above killed the caller: it still answers
        assert c.call(_cmd("PING")) == b"+PONG\r\n"
        c.close()


def _open(port: int, n: int) -> tuple[list[RedisConnection], list[int]]:
    conns = [RedisConnection(port) for _ in range(n)]
    ids = [int(c.call(_cmd("CLIENT", "ID"))[1:-2]) for c in conns]
    return conns, ids


def _alive(conns: list[RedisConnection]) -> list[bool]:
    out = []
    for c in conns:
        try:
            out.append(c.call(_cmd("PING")) == b"+PONG\r\n")
        except (ConnectionError, OSError):
            out.append(False)
    return out


def _kill_round(port: int) -> list[object]:
    """Each filter once, on a fresh set of four connections (the first kills): what
    each kill answered and which of the four still answer a PING after it."""
    seen: list[object] = []
    for filters in (
        lambda ids, socks: ["ID", ids[1]],
        lambda ids, socks: ["ADDR", _addr(socks[2].getsockname())],
        lambda ids, socks: ["LADDR", _addr(socks[0].getpeername())],  # all but the caller
        lambda ids, socks: ["TYPE", "normal", "SKIPME", "yes"],
        lambda ids, socks: ["USER", "default", "ID", ids[3]],
        lambda ids, socks: ["ID", ids[0], "SKIPME", "no"],  # the caller itself
        lambda ids, socks: ["LADDR", _addr(socks[0].getpeername()), "SKIPME", "no"],  # all
        lambda ids, socks: [_addr(socks[1].getsockname())],  # the old form: OK
        lambda ids, socks: [_addr(socks[0].getsockname())],  # the old form kills the caller
    ):
        conns, ids = _open(port, 4)
        args = filters(ids, [c.sock for c in conns])
        seen.append(conns[0].call(_cmd("CLIENT", "KILL", *args)))
        seen.append(_alive(conns))
        for c in conns:
            c.close()
    return seen


def test_kill_by_each_filter_as_redis(ports: tuple[int, int]) -> None:
    ours, theirs = (_kill_round(p) for p in ports)
    assert ours == theirs
    assert ours[:4] == [b":1\r\n", [True, False, True, True], b":1\r\n", [True, True, False, True]]


def test_killed_connection_leaves_client_list_as_redis(ports: tuple[int, int]) -> None:
    for port in ports:
        conns, ids = _open(port, 3)
        assert conns[0].call(_cmd("CLIENT", "KILL", "ID", ids[1])) == b":1\r\n"
        listed = _bulk_text(conns[0].call(_cmd("CLIENT", "LIST")))
        assert sorted(int(dict(_fields(x))["id"]) for x in listed.splitlines()) == [ids[0], ids[2]]
        # killed once: a second kill finds no such client
        assert conns[2].call(_cmd("CLIENT", "KILL", "ID", ids[1])) == b":0\r\n"
        assert _closed(conns[1])
        for c in conns:
            c.close()


# What a connection that kills itself gets: the kill's reply, then the close; the
# commands after it in the same pipeline are not run (their reply never comes).
SELF_KILL = [
    b"SET before 1\r\nCLIENT KILL SKIPME no ID {me}\r\nSET after 1\r\nPING\r\n",
    b"MULTI\r\nCLIENT KILL ID {me} SKIPME no\r\nSET intx 1\r\nEXEC\r\nSET after 1\r\n",
    b"CLIENT KILL {addr}\r\nSET after 1\r\n",
]


def test_kill_self_closes_after_its_reply_as_redis(ports: tuple[int, int]) -> None:
    results = []
    for port in ports:
        watcher = RedisConnection(port)
        got = []
        for template in SELF_KILL:
            c = RedisConnection(port)
            me = c.call(_cmd("CLIENT", "ID"))[1:-2]
            data = template.replace(b"{me}", me)
            c.sock.sendall(data.replace(b"{addr}", _addr(c.sock.getsockname()).encode()))
            got.append(_until_closed(c.sock))
            c.close()
            got.append([watcher.call(_cmd("GET", k)) for k in ("before", "intx", "after")])
        watcher.close()
        results.append(got)
    ours, theirs = results
    # Redis 7.0 cuts an EXEC's reply after the element of the kill that closes its own
    # connection (an array of 2 with 1 element: it drops every reply once the client
    # is to close); ours is whole. The SET in it is applied on both.
    assert theirs[2] == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n"
    theirs[2] = ours[2]
    assert ours == theirs
    assert results[0][0] == b"+OK\r\n:1\r\n"
    assert results[0][2] == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n+OK\r\n"
    assert results[0][3] == [b"$1\r\n1\r\n", b"$1\r\n1\r\n", b"$-1\r\n"]
    assert results[0][4] == b"+OK\r\n"


def test_kill_with_a_password_as_redis(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # A connection not logged in cannot kill; one that logs in and kills itself in the
    # same chunk (the commands held back before AUTH, then run in turn) runs nothing
    # after the kill; a connection not logged in can be killed.
    ours = server_factory(sync="never", extra=["--auth", "t0k"])
    with redis_server(tmp_path, "--requirepass", "t0k") as theirs:
        results = []
        for port in (ours.port, theirs):
            admin, stranger = RedisConnection(port), RedisConnection(port)
            got: list[object] = [stranger.call(_cmd("CLIENT", "KILL", "TYPE", "normal"))]
            assert admin.call(_cmd("AUTH", "t0k")) == b"+OK\r\n"
            got.append(admin.call(_cmd("CLIENT", "KILL", "SKIPME", "yes")))  # the stranger
            got.append(_closed(stranger))
            me = RedisConnection(port)
            addr = _addr(me.sock.getsockname()).encode()
            me.sock.sendall(b"AUTH t0k\r\nCLIENT KILL %b\r\nSET after 1\r\nPING\r\n" % addr)
            got.append(_until_closed(me.sock))
            got.append(admin.call(_cmd("GET", "after")))
            results.append(got)
            for c in (admin, stranger, me):
                c.close()
        assert results[0] == results[1]
        assert results[0] == [
            b"-NOAUTH Authentication required.\r\n",
            b":1\r\n",
            True,
            b"+OK\r\n+OK\r\n",
            b"$-1\r\n",
        ]
