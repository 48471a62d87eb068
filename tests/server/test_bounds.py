"""Resource bounds of the server: descriptors shared by connections and the store.

Real servers (python -m server) on 127.0.0.1, started under a lowered RLIMIT_NOFILE.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import bitcask
from server.app import FD_RESERVE
from tests.server.test_startup import LimitedServer, connect_admitted
from tests.server.wire import Conn
from tests.serverproc import ServerProcess

REFUSED = b"-ERR max number of clients reached\r\n"


def _store_of_files(path: Path, n: int) -> None:
    with bitcask.open(path, sync="never", max_file_size=64, merge_trigger=0) as db:
        for i in range(n):
            db.put(b"k%d" % i, b"v" * 40)  # one file each


def test_connections_leave_room_for_the_stores_data_files(tmp_path: Path) -> None:
    # The connection cap was fitted to RLIMIT_NOFILE - FD_RESERVE as if the store held
    # no descriptor, but each data file holds one: with 300 files under a limit of 512,
    # accept() hit EMFILE near connection 150 (clients hung unanswered in the backlog,
    # asyncio logging "socket.accept() out of system resource") and rotations failed.
    files, limit = 300, 512
    data = tmp_path / "data"
    _store_of_files(data, files)
    srv = LimitedServer(data=data, soft=limit, hard=limit, extra=["--merge-trigger", "0"])
    srv.start()
    held: list[socket.socket] = []
    try:
        replies = []
        for _ in range(limit):  # until one is refused (bounded by the limit itself)
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            sock.settimeout(3)
            sock.sendall(b"PING\r\n")
            try:
                reply = sock.recv(100)
            except TimeoutError:
                reply = b"(no answer)"
            except ConnectionResetError:
                reply = b"(reset)"
            replies.append(reply)
            if reply != b"+PONG\r\n":
                sock.close()
                break
            held.append(sock)
        assert replies[-1] == REFUSED, (len(replies), replies[-1])
        room = limit - FD_RESERVE - files + 1  # the active file is in FD_RESERVE
        assert room - 8 <= len(held) <= room, len(held)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as again:
            assert again.recv(100) == REFUSED  # refused again, not left hanging
        held.pop().close()  # a slot again: a binary connection takes it
        writer = connect_admitted(srv.port)
        held.append(writer.sock)
        for i in range(20):  # rotations still get their descriptors
            assert writer.call("put", b"new%d" % i, b"w" * 100) is True
        assert writer.call("stats")["readonly_reason"] is None
        assert "out of system resource" not in srv.log()
    finally:
        for sock in held:
            sock.close()
        srv.kill()


def _resp(sock: socket.socket, *args: bytes) -> None:
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    sock.sendall(out)


def _read_reply_head(sock: socket.socket) -> bytes:
    """The first line of a reply, the rest of it read and dropped (bounded by a timeout)."""
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
    return buf.split(b"\r\n", 1)[0]


def test_a_huge_mget_reply_is_refused_and_other_clients_go_on(tmp_path: Path) -> None:
    # MGET of one 1 MiB key named 300 times built a 300 MiB reply (the values, their
    # join, the transport's copy: ~865 MB of peak RSS). RESP has no max_batch; the
    # reply is now bounded by --max-reply-bytes (default 128 MiB), refused with an
    # error before any value is read, the connection and every other one served.
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data=data, sync="never").start()
    try:
        big = b"x" * (1 << 20)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as a:
            _resp(a, b"SET", b"big", big)
            assert _read_reply_head(a) == b"+OK"
            base = srv.peak_rss_bytes()
            _resp(a, b"MGET", *[b"big"] * 300)
            head = _read_reply_head(a)
            assert head.startswith(b"-ERR reply of 314572800 bytes"), head
            assert b"max-reply-bytes" in head
            assert srv.peak_rss_bytes() - base < 64 << 20
            _resp(a, b"MGET", *[b"big"] * 100)  # under the bound: answered
            assert _read_reply_head(a) == b"*100"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as b:
            _resp(b, b"PING")
            assert _read_reply_head(b) == b"+PONG"
    finally:
        srv.kill()


def test_the_mget_bound_holds_inside_exec(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data=data, sync="never", extra=["--max-reply-bytes", "3000000"])
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as a:
            _resp(a, b"SET", b"big", b"x" * (1 << 20))
            assert _read_reply_head(a) == b"+OK"
            for cmd in ([b"MULTI"], [b"MGET", b"big", b"big", b"big"], [b"SET", b"k", b"1"]):
                _resp(a, *cmd)
                assert _read_reply_head(a) in (b"+OK", b"+QUEUED")
            _resp(a, b"EXEC")
            reply = b""
            while reply.count(b"\r\n") < 3:
                reply += a.recv(4096)
            assert reply.startswith(
                b"*2\r\n-ERR reply of 3145728 bytes of values exceeds max-reply-bytes 3000000 "
            ), reply
            assert reply.endswith(b"\r\n+OK\r\n")
            _resp(a, b"MGET", b"big", b"big")  # under the bound
            assert _read_reply_head(a) == b"*2"
    finally:
        srv.kill()


def test_sigterm_abandons_a_running_merge(tmp_path: Path) -> None:
    # A `merge` request in flight kept the connection busy, so the graceful stop
    # waited for the whole merge (up to the whole shutdown budget, then "forced:
    # budget exceeded", exit 1). The stop now abandons it at once: the merge call
    # answers SHUTTING_DOWN, its output is discarded, the next open serves every
    # acknowledged write.
    data = tmp_path / "data"
    n = 300_000
    with bitcask.open(data, sync="never", merge_trigger=0) as db:
        for i in range(0, n, 5000):
            with db.batch() as b:
                for j in range(i, i + 5000):
                    b.put(b"k%d" % j, b"v" * 30)
    srv = ServerProcess(data=data, sync="never", extra=["--merge-trigger", "0"]).start()
    try:
        merger, watcher = Conn(srv.port), Conn(srv.port)
        merger.send("merge")
        for _ in range(500):  # until it runs (bounded: 5 s)
            if watcher.call("stats")["merging"]:
                break
            time.sleep(0.01)
        assert watcher.call("put", b"acked", b"yes") is True
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        _, _, error, result = merger.read_message()
        assert result is None and error is not None and error[1] == "SHUTTING_DOWN", (error, result)
        merger.close()
        watcher.close()
        assert srv.proc.wait(60) == 0  # the stop's own budget is 10 s
        assert "stopped (clean)" in srv.log()
    finally:
        srv.kill()
    assert not (data / "merge").exists()
    with bitcask.open(data) as db:
        assert db.get(b"acked") == b"yes" and len(db) == n + 1
