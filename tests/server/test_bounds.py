"""Resource bounds of the server: descriptors shared by connections and the store.

Real servers (python -m server) on 127.0.0.1, started under a lowered RLIMIT_NOFILE.
"""

from __future__ import annotations

import socket
from pathlib import Path

import bitcask
from server.app import FD_RESERVE
from tests.server.test_startup import LimitedServer, connect_admitted

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

