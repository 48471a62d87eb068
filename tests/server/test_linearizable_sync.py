"""`sync` under --sync never makes every earlier write durable, also one a rotation
sealed into an older file since (the engine's own fault-injection point, bitcask._io,
counts the fsyncs).

Before the fix sync() fsynced the active file only, and under never a rotation seals
the old file without an fsync: `db.put(k); <enough writes to rotate>; db.sync()` left
k's file unsynced although sync() promises k is durable (bitcask/_db_writes.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from bitcask import _io
from tests.server.wire import Conn
from tests.serverproc import ServerProcess


def _data_files(path: Path) -> dict[int, str]:
    """inode -> name of every data file."""
    return {os.stat(p).st_ino: p.name for p in path.glob("*.data")}


def test_sync_covers_files_sealed_since(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: set[int] = set()
    real = _io.fsync

    def counting(fd: int) -> None:
        real(fd)
        synced.add(os.fstat(fd).st_ino)

    monkeypatch.setattr(_io, "fsync", counting)
    with bitcask.open(tmp_path / "db", sync="never", max_file_size=4096) as db:
        db.put(b"k", b"v")
        first = _data_files(tmp_path / "db")
        assert len(first) == 1
        for i in range(100):  # rotates past the file holding k
            db.put(b"f%d" % i, b"x" * 100)
        assert len(_data_files(tmp_path / "db")) > 2
        synced.clear()
        db.sync()
        unsynced = {name for ino, name in _data_files(tmp_path / "db").items() if ino not in synced}
        assert not unsynced, f"sync() left {sorted(unsynced)} unsynced"
        assert set(first) <= synced


def test_sync_request_under_never(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--max-file-size", "4096"])
    with Conn(srv.port) as conn:
        for i in range(100):
            conn.call("put", b"f%d" % i, b"x" * 100)
        assert conn.call("sync") is True
