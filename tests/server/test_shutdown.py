"""Graceful shutdown: SIGTERM during load answers or refuses everything, exits 0, store clean."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import bitcask
from server import Server
from tests.server.wire import Conn, RemoteError
from tests.serverproc import ServerProcess


def load(
    port: int, tag: bytes, acked: dict[bytes, bytes], refused: list[str], stop: threading.Event
) -> None:
    try:
        conn = Conn(port, timeout=10)
    except OSError:
        return
    i = 0
    try:
        while not stop.is_set():
            key, value = b"%s:%d" % (tag, i), b"v%d" % i
            i += 1
            try:
                if conn.call("put", key, value) is True:
                    acked[key] = value
            except RemoteError as exc:
                refused.append(exc.name)
    except (OSError, ConnectionError):
        pass  # closed by the server after its drain: later requests are refused by the close
    finally:
        conn.close()


def test_sigterm_during_load(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always")
    acked: dict[bytes, bytes] = {}
    refused: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=load, args=(srv.port, b"c%d" % n, acked, refused, stop))
        for n in range(6)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    code = srv.stop(signal.SIGTERM, timeout=20)
    took = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(10)
    assert code == 0, srv.log()
    assert took < 10, f"shutdown took {took:.1f}s"
    assert set(refused) <= {"SHUTTING_DOWN"}, refused
    assert "stopped (clean)" in srv.log()
    with bitcask.open(srv.data, sync="never") as db:
        report = db.stats()["recovery"]
        assert report["truncated_bytes"] == 0 and report["corrupt_records"] == 0, report
        lost = [k for k, v in acked.items() if db.get(k) != v]
        assert not lost, f"{len(lost)} acknowledged writes lost"


def test_sigint_exits_zero(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never")
    with Conn(srv.port) as c:
        c.call("put", b"k", b"v")
    assert srv.stop(signal.SIGINT) == 0


def _slow_writes(srv: Server) -> None:
    """Every group write of `srv` takes 0.8 s more."""
    real_write = srv.db.write_group

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.8)
        return real_write(*args, **kwargs)

    srv.db.write_group = slow_write


async def _stop_behind_a_write(srv: Server, conn: Conn) -> asyncio.Task[bool]:
    """Send a put the slow write holds, then begin a stop while it is in flight."""
    conn.send("put", b"in-flight", b"v")
    await asyncio.sleep(0.2)  # the put is inside the slow write now
    stopping = asyncio.create_task(srv.stop())
    await asyncio.sleep(0.1)
    return stopping


async def test_readyz_turns_503_and_in_flight_work_finishes(
    inproc: Callable[..., Awaitable[Server]],
) -> None:
    srv = await inproc(sync="always", writer="thread")
    _slow_writes(srv)
    http = socket.create_connection(("127.0.0.1", srv.http_port), timeout=10)
    conn = Conn(srv.port)
    try:
        stopping = await _stop_behind_a_write(srv, conn)

        def probe() -> bytes:
            http.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
                data += http.recv(65536)
            return data

        reply = await asyncio.to_thread(probe)
        assert reply.startswith(b"HTTP/1.1 503") and b"shutting down" in reply
        _, _, err, result = await asyncio.to_thread(conn.read_message)
        assert (err, result) == (None, True), "the in-flight put was answered"
        assert await asyncio.wait_for(stopping, 20) is True
    finally:
        conn.close()
        http.close()
    with bitcask.open(srv.config.data, sync="never") as db:
        assert db.get(b"in-flight") == b"v"


def test_a_client_that_never_pauses_cannot_hold_the_shutdown(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--shutdown-timeout", "2"])
    stop = threading.Event()
    answered: list[int] = []

    def hammer() -> None:
        try:
            with Conn(srv.port) as c:
                while not stop.is_set():
                    c.call("get", b"k")
                    answered.append(1)
        except (OSError, ConnectionError, RemoteError):
            pass

    thread = threading.Thread(target=hammer)
    thread.start()
    deadline = time.monotonic() + 5
    while len(answered) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    code = srv.stop(signal.SIGTERM, timeout=20)
    took = time.monotonic() - started
    stop.set()
    thread.join(10)
    assert code == 0, srv.log()
    assert took < 5, f"shutdown took {took:.1f}s with a 2 s budget"


async def test_a_redis_connection_whose_first_command_comes_during_the_stop_is_refused_writes(
    inproc: Callable[..., Awaitable[Server]],
) -> None:
    # The Redis dialect is built when the first RESP connection speaks (server/app.py):
    # built during a stop, it must refuse writes as the one built before would.
    srv = await inproc(sync="always", writer="thread")
    _slow_writes(srv)
    silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    conn = Conn(srv.port)
    try:
        stopping = await _stop_behind_a_write(srv, conn)

        def first_words() -> bytes:
            silent.sendall(b"SET late v\r\nGET late\r\nPING\r\n")
            data = b""
            while data.count(b"\r\n") < 3:
                chunk = silent.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

        reply = await asyncio.to_thread(first_words)
        # the write refused, the read and the ping answered
        assert reply == b"-ERR the server is shutting down\r\n$-1\r\n+PONG\r\n"
        _, _, err, result = await asyncio.to_thread(conn.read_message)
        assert (err, result) == (None, True), "the in-flight put was answered"
        assert await asyncio.wait_for(stopping, 20) is True
    finally:
        conn.close()
        silent.close()
    with bitcask.open(srv.config.data, sync="never") as db:
        assert db.get(b"late") is None
        assert db.get(b"in-flight") == b"v"
