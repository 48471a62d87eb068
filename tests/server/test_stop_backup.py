"""A graceful stop (SIGTERM) with a backup in flight: it ends at once, answered
SHUTTING_DOWN, nothing half-made left, every acknowledged write served next time.

- snapshot_begin's preparation (a CRC pass over every sealed file, missing hints
  built: minutes on a large store) held the stop until it finished, then the
  connection was closed under the reply. It is now abandoned like a merge
  (Bitcask.stop_merges, checked between blocks). Slowed here by strace delaying the
  server's every openat by 50 ms (Debian package ``strace``) over ~80 sealed files.
- A client pulling chunks went on for half the shutdown budget and then lost its
  connection; its next snapshot_read is now answered SHUTTING_DOWN.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import bitcask
from tests.protocol._redis_server import require_binary
from tests.server.wire import Conn, RemoteError, request
from tests.serverproc import ServerProcess, attach_strace

KEYS = 400


def _fill(port: int) -> dict[bytes, bytes]:
    written = {}
    with Conn(port) as c:
        for i in range(0, KEYS, 50):
            pairs = [[b"key%04d" % j, b"%04d" % j * 250] for j in range(i, i + 50)]
            c.call("mput", pairs)
            written.update((bytes(k), bytes(v)) for k, v in pairs)
    return written


def _reopened_serves(data: Path, written: dict[bytes, bytes]) -> None:
    with bitcask.open(data, sync="never") as db:
        assert {k: db.get(k) for k in written} == written
    leftovers = [n for n in os.listdir(data) if n.count(".hint") and not n.endswith(".hint")]
    leftovers += [n for n in os.listdir(data) if n.endswith(".hint") and n.count(".") > 1]
    assert not leftovers, leftovers


def test_sigterm_abandons_a_snapshot_being_prepared(tmp_path: Path) -> None:
    strace = require_binary("strace", "strace")
    data = tmp_path / "db"
    # small files: ~80 sealed data files, each opened (slowly) by the preparation
    srv = ServerProcess(data=data, sync="never", extra=["--max-file-size", "1400"]).start()
    assert srv.proc is not None
    written = _fill(srv.port)
    tracer = attach_strace(strace, srv.proc.pid, "openat", "delay_enter=50000")
    try:
        with Conn(srv.port, timeout=30) as c:
            c.send("snapshot_begin")
            time.sleep(0.3)  # the preparation is under way
            srv.proc.send_signal(signal.SIGTERM)
            try:
                _, began = c.reply()
            except RemoteError as err:
                assert err.name == "SHUTTING_DOWN", err
            else:
                raise AssertionError(f"the snapshot was prepared: {began!r:.100}")
        assert srv.proc.wait(30) == 0
    finally:
        tracer.terminate()
        tracer.wait(10)
        srv.kill()
    assert "stopped (clean)" in srv.log()
    _reopened_serves(data, written)


def test_sigterm_ends_a_backup_pulling_chunks(tmp_path: Path) -> None:
    data = tmp_path / "db"
    srv = ServerProcess(data=data, sync="never").start()
    assert srv.proc is not None
    written = _fill(srv.port)
    try:
        with Conn(srv.port, timeout=30) as c:
            snap = c.call("snapshot_begin")
            name = snap["files"][0]["name"]
            assert c.call("snapshot_read", snap["id"], name, 0, 4096)
            # a client pulling ahead (pipelined reads) that reads its replies only
            # after the stop began: the server could not send them all before it
            reads = 600
            c.send_raw(
                b"".join(
                    request(1000 + i, "snapshot_read", [snap["id"], name, 0, 65536])
                    for i in range(reads)
                )
            )
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            answers = []
            for _ in range(reads):
                try:
                    c.reply()
                    answers.append("chunk")
                except RemoteError as exc:
                    answers.append(exc.name)
            assert answers[-1] == "SHUTTING_DOWN", answers[-3:]
            first = answers.index("SHUTTING_DOWN")
            assert set(answers[first:]) == {"SHUTTING_DOWN"}  # none read after it
        assert srv.proc.wait(30) == 0
    finally:
        srv.kill()
    assert "stopped (clean)" in srv.log()
    _reopened_serves(data, written)
