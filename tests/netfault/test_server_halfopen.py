"""Half-open connections on the server: clients whose host vanishes without a FIN.

A server in its own network namespace, clients in the root namespace, and then a
silent partition (the veth set down: no FIN, no RST). Every connection, whatever
state it was left in, must give its slot back within --idle-timeout (here 1 s):
idle, mid-frame, inside MULTI, after WATCH, mid HTTP body, and those whose
replies the dead peer will never read (the server's write buffer full, reading
paused: a pipelined Redis GET of a large value, pipelined HTTP GETs, a backup
stream). Before the fix the last three held their slot until the kernel gave up
retransmitting (tcp_retries2: about 15 minutes), because the sweeper counted
their unsent replies as work in progress and a graceful close waited to flush them.

With --idle-timeout 0, TCP keepalive (--tcp-keepalive, Redis's tcp-keepalive) is
what drops a vanished idle peer; checked here on loopback by the kernel's own
timer (`ss -o`), and end to end across a partition (4 s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from client import BackupError, connect, connect_resp
from tests.netfault.conftest import Net, NsServer, metric, wait_for
from tests.serverproc import ServerProcess
from tests.sharding.netlab import Host

BIG = 1 << 20


def _resp(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def _sock(address: str, port: int, *, small_window: bool = False) -> socket.socket:
    s = socket.socket()
    s.settimeout(5.0)
    if small_window:  # the peer's receive window fills after a few KiB
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((address, port))
    return s


def _open_in_every_state(srv: NsServer) -> list[socket.socket]:
    """One connection left in each state (answers read where a state needs one)."""
    a, port, http = srv.host, srv.port, srv.http_port
    socks = []
    s = _sock(a, port)
    s.sendall(_resp(b"SET", b"big", b"x" * BIG))
    assert s.recv(16) == b"+OK\r\n"
    s.sendall(_resp(b"PING"))  # idle, after a reply
    assert s.recv(16) == b"+PONG\r\n"
    socks.append(s)
    s = _sock(a, port)
    s.sendall(b"*3\r\n$3\r\nSET\r\n")  # mid-frame
    socks.append(s)
    s = _sock(a, port)
    s.sendall(_resp(b"MULTI") + _resp(b"SET", b"a", b"1"))
    assert s.recv(32) == b"+OK\r\n+QUEUED\r\n"
    socks.append(s)
    s = _sock(a, port)
    s.sendall(_resp(b"WATCH", b"a"))
    assert s.recv(16) == b"+OK\r\n"
    socks.append(s)
    s = _sock(a, http)
    s.sendall(b"PUT /kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")  # mid-body
    socks.append(s)
    s = _sock(a, port, small_window=True)
    s.sendall(_resp(b"GET", b"big") * 20)  # replies back up: write buffer full
    socks.append(s)
    s = _sock(a, http, small_window=True)
    s.sendall(b"GET /kv/big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
    socks.append(s)
    return socks


async def test_a_vanished_peer_frees_its_slot_in_every_state(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]], tmp_path: Path
) -> None:
    srv, host = ns_server("--idle-timeout", "1", "--http-keepalive", "1",
                          "--http-body-timeout", "1")  # fmt: skip
    socks = _open_in_every_state(srv)
    dest = tmp_path / "backup"
    client = await connect(srv.host, srv.port, timeout=0.3, reconnect_attempts=1)
    try:
        await client.put(b"fill", os.urandom(2 * BIG))
        # the wire slowed (not the client): the cut comes while snapshot chunks flow
        net.throttle(host, "8mbit")
        backup = asyncio.create_task(client.backup(dest))  # 3 MiB: about 3 s
        await asyncio.sleep(0.3)
        assert not backup.done()
        n = await asyncio.to_thread(metric, srv, host, "bitcask_connections")
        assert n == len(socks) + 2  # those, the backup's and the probe's own
        net.cut(host)
        # the client side of the backup: a bounded failure, nothing under its name
        with pytest.raises(BackupError, match="backup to"):
            await asyncio.wait_for(backup, 10.0)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["server-7379.log", "srv"]
        # the server side: every slot back (only the probe's own connection left)
        await asyncio.to_thread(
            wait_for,
            lambda: metric(srv, host, "bitcask_connections") == 1,
            10.0,
            "every vanished peer's connection closed",
        )
    finally:
        await client.close(timeout=0.1)
        for s in socks:
            s.close()


async def test_tcp_keepalive_is_armed_on_both_ends(tmp_path: Path) -> None:
    """--tcp-keepalive sets SO_KEEPALIVE on accepted connections (both ports), and the
    clients set it on theirs (tcp_keepalive=, 60 s by default): the kernel shows the
    timer on each socket (`ss -o`)."""
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin")
    if ss is None:
        pytest.skip("no ss command (apt-get install iproute2)")
    srv = ServerProcess(data=tmp_path / "d", extra=["--tcp-keepalive", "77"]).start()
    try:
        with _sock(srv.host, srv.port) as s, _sock(srv.host, srv.http_port) as h:
            s.sendall(_resp(b"PING"))
            assert s.recv(16) == b"+PONG\r\n"
            async with await connect(srv.host, srv.port) as c:
                r = await connect_resp(srv.host, srv.port)
                try:
                    await c.ping()
                    await r.ping()
                    out = subprocess.run(
                        [ss, "-tnoH", "state", "established"],
                        capture_output=True, text=True, timeout=20, check=True,
                    ).stdout  # fmt: skip
                finally:
                    await r.close()
            lines = out.splitlines()

            def end(local: int, peer: int) -> str:
                found = [ln for ln in lines if ln.split()[2].endswith(f":{local}")
                         and ln.split()[3].endswith(f":{peer}")]  # fmt: skip
                assert len(found) == 1, out
                return found[0]

            mine = [s.getsockname()[1], h.getsockname()[1]]
            for port, peer in zip((srv.port, srv.http_port), mine, strict=True):
                assert "timer:(keepalive," in end(port, peer), out  # the server's end
            clients = [ln for ln in lines if ln.split()[3].endswith(f":{srv.port}")
                       and not ln.split()[2].endswith(tuple(f":{p}" for p in mine))]  # fmt: skip
            assert len(clients) == 2, out  # Client's and RespClient's own ends
            for line in clients:
                assert "timer:(keepalive," in line, line
    finally:
        srv.stop()


def test_tcp_keepalive_drops_a_vanished_idle_peer_without_idle_timeout(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]]
) -> None:
    srv, host = ns_server("--idle-timeout", "0", "--tcp-keepalive", "1")
    socks = [_sock(srv.host, srv.port) for _ in range(3)]
    try:
        for s in socks:
            s.sendall(_resp(b"PING"))
            assert s.recv(16) == b"+PONG\r\n"
        net.cut(host)
        wait_for(lambda: metric(srv, host, "bitcask_connections") == 1, 10.0,
                 "keepalive dropped the vanished peers")  # fmt: skip
    finally:
        for s in socks:
            s.close()


def test_a_vanished_reader_does_not_force_the_shutdown(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]]
) -> None:
    """SIGTERM with a vanished peer's replies backed up: the stop stays clean (exit 0)
    instead of waiting out its budget for a reader that is gone ('forced', exit 1)."""
    srv, host = ns_server("--idle-timeout", "0", "--shutdown-timeout", "1",
                          "--drain-seconds", "0")  # fmt: skip
    with _sock(srv.host, srv.port) as s:
        s.sendall(_resp(b"SET", b"big", b"x" * BIG))
        assert s.recv(16) == b"+OK\r\n"
    with (
        _sock(srv.host, srv.port, small_window=True) as binary,
        _sock(srv.host, srv.http_port, small_window=True) as http,
    ):
        binary.sendall(_resp(b"GET", b"big") * 20)
        http.sendall(b"GET /kv/big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        wait_for(lambda: metric(srv, host, "bitcask_connections") == 3, 10.0, "both connected")
        net.cut(host)
        assert srv.stop() == 0, srv.log()
    assert "stopped (clean)" in srv.log()
