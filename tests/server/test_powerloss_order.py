"""Power loss under --sync always: no reply before the fsyncs its write depends on.

The server acknowledges a write with its reply on the socket. Under --sync always
(docs/operations.md: nothing acknowledged is lost on power loss) each reply must
come after (a) an fdatasync of the data file holding the write, returned after the
request was sent, and (b) an fsync of the directory of every file and directory
created on the way: the data files rotation made, and --data itself (the server
creates it). A real server runs under ``strace -f -y`` from its start; one client
sends SET and DEL one at a time over the Redis dialect (each waits for its reply),
so reply N acknowledges request N. The order is read from the log
(tests/bitcask/_syscall_trace.py). A few seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bitcask
from bitcask._keydir import FID_SHIFT
from tests.bitcask._syscall_trace import Event, Trace, require_strace, strace_argv
from tests.serverproc import STOP_TIMEOUT, ServerProcess

VALUE = b"v" * 1500  # two records fill a 4 KiB file: every other SET rotates
_KEY = re.compile(r"SET\\r\\n\$4\\r\\n(c\dk\d)")  # a request as strace shows it


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _reply(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        buf += chunk
    return buf


@contextlib.contextmanager
def _traced_server(tmp_path: Path, data: Path | None = None) -> Iterator[ServerProcess]:
    """A --sync always server rotating every 4 KiB on ``data`` (tmp_path/data), under
    strace from its start (the log at tmp_path/trace); stopped with SIGTERM (strace
    exits with it) on leaving."""
    strace = require_strace()
    srv = ServerProcess(
        data=data or tmp_path / "data",
        sync="always",
        extra=["--max-file-size", "4096", "--merge-trigger", "0"],
        program=[*strace_argv(strace, tmp_path / "trace"), sys.executable, "-m", "server"],
    )
    srv.start()
    try:
        yield srv
    finally:
        try:
            assert srv.proc is not None
            pid = srv.proc.pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in children:  # the server, strace's only child
                os.kill(int(child), signal.SIGTERM)
            srv.proc.wait(STOP_TIMEOUT)
        finally:
            srv.kill()


def _replies(trace: Trace) -> list[Event]:
    return [
        e
        for e in trace.where(lambda e: e.call in ("write", "sendto", "writev", "sendmsg"))
        if str(e.fd_path).startswith("socket:") and e.payload in ("+OK\\r\\n", ":1\\r\\n")
    ]


def _files(data: Path, keys: list[bytes]) -> dict[bytes, str]:
    """The data file holding each key's record, from the store as the server left it."""
    with bitcask.open(str(data), readonly=True) as db:
        return {k: str(data / f"{db.keydir.map[k] >> FID_SHIFT:010d}.data") for k in keys}


def test_replies_follow_the_fsyncs_of_their_writes(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "trace"
    sent = [b"d"] + [b"k%d" % i for i in range(6)] + [b"d"]
    with (
        _traced_server(tmp_path) as srv,
        socket.create_connection((srv.host, srv.port), 10) as sock,
    ):
        for key in sent[:-1]:
            sock.sendall(_command(b"SET", key, VALUE))
            assert _reply(sock) == b"+OK\r\n"
        sock.sendall(_command(b"DEL", b"d"))
        assert _reply(sock) == b":1\r\n"
    trace = Trace(log)
    replies = _replies(trace)
    assert len(replies) == len(sent), [e.payload for e in replies]
    # The file holding each write: the keys' locations; the DEL's tombstone is in the
    # newest file; the SET of the key it deleted went where the next SET went (the
    # first two records share the first file).
    held = _files(data, sent[1:-1])
    files = [held[b"k0"], *held.values(), max(str(p) for p in data.glob("*.data"))]
    wrong = []
    after = -1
    rotated = set()
    for key, path, reply in zip(sent, files, replies, strict=True):
        rotated.add(path)
        if not trace.synced(path, after, reply.start):
            wrong.append(f"{key!r}: replied before an fdatasync of {path}")
        for made, parent in ((path, str(data)), (str(data), str(data.parent))):
            for c in trace.created(made):
                if c.end < reply.start and not trace.synced(parent, c.end, reply.start):
                    wrong.append(f"{key!r}: {made} created, {parent} not fsynced before the reply")
        after = reply.end
    assert len(rotated) >= 3, rotated
    assert wrong == []
    with bitcask.open(str(data), readonly=True) as db:  # every acknowledged write is there
        assert [db.get(k) for k in sent[:-1]] == [None] + [VALUE] * 6


def test_a_nested_data_directory_it_creates_is_durable_before_the_first_reply(
    tmp_path: Path,
) -> None:
    # --data new/a/data with none of the three there: each level the server creates
    # must be fsynced into its parent before a write in the store is acknowledged (the
    # server made the levels itself, and only the store's own parent was fsynced).
    data = tmp_path / "new" / "a" / "data"
    with (
        _traced_server(tmp_path, data) as srv,
        socket.create_connection((srv.host, srv.port), 10) as sock,
    ):
        sock.sendall(_command(b"SET", b"k", b"v"))
        assert _reply(sock) == b"+OK\r\n"
    trace = Trace(tmp_path / "trace")
    (reply,) = _replies(trace)
    wrong = []
    for level in (data.parent.parent, data.parent, data):
        made = trace.created(str(level))
        assert made, f"{level} was not created under the trace"
        if not trace.synced(str(level.parent), made[-1].end, reply.start):
            wrong.append(f"{level} created, {level.parent} not fsynced before the reply")
    assert wrong == []
    with bitcask.open(str(data), readonly=True) as db:
        assert db.get(b"k") == b"v"
    assert (data.stat().st_mode & 0o777) == 0o700  # the owner's only, as before


def test_group_commit_replies_follow_an_fsync_begun_after_their_request(tmp_path: Path) -> None:
    # Four clients at once, one SET at a time each: the writer groups them. A reply
    # may only follow an fdatasync of its key's file that began after the server read
    # the request (an fsync already running when it arrived does not cover it).
    data = tmp_path / "data"
    keys = [[b"c%dk%d" % (c, i) for i in range(5)] for c in range(4)]

    def client(port: int, mine: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for key in mine:
                sock.sendall(_command(b"SET", key, VALUE))
                assert _reply(sock) == b"+OK\r\n"

    with _traced_server(tmp_path) as srv, ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(client, srv.port, mine) for mine in keys]:
            done.result(timeout=60)
    trace = Trace(tmp_path / "trace")
    files = _files(data, [k for mine in keys for k in mine])
    reads = [
        e
        for e in trace.where(lambda e: e.call in ("read", "recvfrom", "recvmsg"))
        if str(e.fd_path).startswith("socket:") and _KEY.search(e.payload)
    ]
    replies = _replies(trace)
    assert len(replies) == len(files), [e.payload for e in replies]
    wrong = []
    for reply in replies:
        request = [r for r in reads if r.fd_path == reply.fd_path and r.end < reply.start][-1]
        key = _KEY.findall(request.payload)[-1].encode()
        if not trace.synced(files[key], request.end, reply.start):
            wrong.append(
                f"{key!r}: replied without an fdatasync of {files[key]} begun after its request"
            )
    assert wrong == []
    assert len(set(files.values())) >= 5  # the group commits rotated
