"""A health check's PING is answered while the disk stalls the writer.

A real server (--sync always, --writer-queue-max 2) whose every fdatasync strace
delays by 1.5 s (``-e inject=fdatasync:delay_enter=1500000``; Debian package
``strace``); one connection pipelines SETs past the writer's mark. While those
wait for the disk, a PING on a new connection, on an idle one opened before, and
a binary ``ping`` are answered at once (they used to wait until the writer's queue
fell to half: 17.5 s for a new connection's PING behind 100 queued SETs with a 2 s
fsync). A connection with its own write pending still gets its replies in order.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.protocol._redis_server import require_binary
from tests.server.wire import Conn
from tests.serverproc import ServerProcess, attach_strace

SETS = 30


def _set(i: int) -> bytes:
    key = b"k%d" % i
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _available(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(1 << 16)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def test_ping_is_answered_while_writes_elsewhere_wait_for_the_disk(tmp_path: Path) -> None:
    strace = require_binary("strace", "strace")
    srv = ServerProcess(data=tmp_path / "db", extra=["--writer-queue-max", "2"]).start()
    assert srv.proc is not None
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    idle.sendall(b"PING\r\n")
    assert _read_exactly(idle, 7) == b"+PONG\r\n"
    tracer = attach_strace(strace, srv.proc.pid, "fdatasync", "delay_enter=1500000")
    try:
        writer = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        writer.sendall(b"".join(_set(i) for i in range(SETS)))
        own = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        own.sendall(_set(SETS) + b"PING\r\n")
        time.sleep(0.1)  # the SETs reached the writer, over its mark
        fresh = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        fresh.sendall(b"PING\r\n")
        assert _read_exactly(fresh, 7) == b"+PONG\r\n"
        idle.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert _read_exactly(idle, 7) == b"+PONG\r\n"
        with Conn(srv.port, timeout=10) as binary:
            assert binary.call("ping") == "PONG"
        # all three answered inside the first fsync: not one write is answered yet
        early = _available(writer)
        assert early == b""
    finally:
        tracer.terminate()  # detaches: the delayed calls go on
        tracer.wait(10)
    assert _read_exactly(writer, 5 * SETS) == b"+OK\r\n" * SETS
    # its own write first, then the PING (Redis answers in order)
    assert _read_exactly(own, 12) == b"+OK\r\n+PONG\r\n"
    for sock in (idle, writer, own, fresh):
        sock.close()
    assert srv.stop() == 0
