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

import os
import signal
import socket
import sys
from pathlib import Path

import bitcask
from bitcask._keydir import FID_SHIFT
from tests.bitcask._syscall_trace import Trace, require_strace, strace_argv
from tests.serverproc import STOP_TIMEOUT, ServerProcess

VALUE = b"v" * 1500  # two records fill a 4 KiB file: every other SET rotates


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _reply(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        buf += chunk
    return buf


def _stop_traced(srv: ServerProcess) -> None:
    # SIGTERM the server (strace's child), then wait for strace: it exits with it.
    assert srv.proc is not None
    tracer = srv.proc
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
    assert len(children) == 1, children
    os.kill(int(children[0]), signal.SIGTERM)
    try:
        tracer.wait(STOP_TIMEOUT)
    finally:
        srv.kill()


def test_replies_follow_the_fsyncs_of_their_writes(tmp_path: Path) -> None:
    strace = require_strace()
    data, log = tmp_path / "data", tmp_path / "trace"
    srv = ServerProcess(
        data=data,
        sync="always",
        extra=["--max-file-size", "4096", "--merge-trigger", "0"],
        program=[*strace_argv(strace, log), sys.executable, "-m", "server"],
    )
    srv.start()
    sent = [b"d"] + [b"k%d" % i for i in range(6)] + [b"d"]
    try:
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            for key in sent[:-1]:
                sock.sendall(_command(b"SET", key, VALUE))
                assert _reply(sock) == b"+OK\r\n"
            sock.sendall(_command(b"DEL", b"d"))
            assert _reply(sock) == b":1\r\n"
    finally:
        _stop_traced(srv)
    trace = Trace(log)
    replies = [
        e
        for e in trace.where(lambda e: e.call in ("write", "sendto", "writev", "sendmsg"))
        if str(e.fd_path).startswith(("socket:", "TCP")) and e.payload in ("+OK\\r\\n", ":1\\r\\n")
    ]
    assert len(replies) == len(sent), [e.payload for e in replies]
    # The file holding each write, from the store as the server left it: the keys'
    # locations; the DEL's tombstone is in the newest file. The SET of the key it
    # deleted is checked against the file the next SET went to or the one before.
    with bitcask.open(str(data), readonly=True) as db:
        files = [db.keydir.map[k] >> FID_SHIFT for k in sent[1:-1]]
    files = [files[0], *files, max(int(p.stem) for p in data.glob("*.data"))]
    wrong = []
    after = -1
    rotated = set()
    for key, fid, reply in zip(sent, files, replies, strict=True):
        path = str(data / f"{fid:010d}.data")
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
