"""The defects the crash-point sweep (tests/bitcask/test_crashpoints.py) found, one by one.

Each test rebuilds, without strace, the state a kill or a failed system call left,
and checks what the fix promises: a backup killed mid-copy leaves no part under its
name, a killed repair leaves no stale hint and no ``.repair`` copy, close() and a
failed open never keep the store locked, and a hint entry past its data file's end
makes the open scan the file instead of get() failing with AttributeError.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import bitcask
from bitcask import _files
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, map_file, scan
from bitcask._hint import build_hint, write_hint


def _store(path: Path, n: int = 5) -> dict[bytes, bytes]:
    model = {b"k%d" % i: b"value %d " % i + b"." * 50 for i in range(n)}
    with bitcask.open(path, sync="never") as db:
        for k, val in model.items():
            db.put(k, val)
    return model


def test_a_hint_entry_past_its_data_file_is_not_trusted(tmp_path: Path) -> None:
    # A hint whose CRC and data size check out but whose last entry points past the
    # file's end (a stale hint beside a file rewritten to the same size): get()
    # raised AttributeError ('NoneType' object has no attribute 'fileno').
    model = _store(tmp_path)
    data = tmp_path / "0000000001.data"
    size = data.stat().st_size
    mm = map_file(str(data))
    assert mm is not None
    recs = list(scan(mm, FILE_HEADER_SIZE, size, ScanIssues()))
    del mm
    _off, rsize, flags, ts, exp, key, aux = recs[-1]
    recs[-1] = (size - 8, rsize, flags, ts, exp, key, aux)  # ends past the file
    write_hint(str(tmp_path / "0000000001.hint"), build_hint(1, size, recs))
    for readonly in (True, False):
        with bitcask.open(tmp_path, readonly=readonly) as db:
            assert db.recovery.scanned_files == 1 and db.recovery.hinted_files == 0
            assert {k: db.get(k) for k in model} == model
    with bitcask.open(tmp_path) as db:  # the hint the scan rebuilt is trusted again
        assert db.recovery.hinted_files == 1
        assert {k: db.get(k) for k in model} == model


def test_close_that_cannot_map_the_sealed_file_still_unlocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() maps the file it sealed (for its hint); an EIO or EMFILE there escaped
    # close() before the lock was released: the store stayed locked for the rest of
    # the process (StoreLockedError naming this very process).
    model = _store(tmp_path)
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"late", b"written before close")

    def no_mapping(path: str) -> object:
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(_files, "map_file", no_mapping)
    db.close()
    monkeypatch.undo()
    with bitcask.open(tmp_path) as db:
        assert {k: db.get(k) for k in model} == model
        assert db.get(b"late") == b"written before close"


def test_open_that_cannot_start_its_thread_still_unlocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RuntimeError("can't start new thread") from the writer's worker left the lock
    # taken and the active file open: this process could never open the store again.
    model = _store(tmp_path)
    start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name.startswith("bitcask-"):
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        bitcask.open(tmp_path)
    monkeypatch.undo()
    with bitcask.open(tmp_path) as db:
        assert {k: db.get(k) for k in model} == model


def test_a_killed_repairs_copy_is_removed_by_a_writer_open(tmp_path: Path) -> None:
    # repair writes <data file>.repair and renames it over the file; killed before
    # the rename, the copy (the size of the data file) stayed forever.
    model = _store(tmp_path)
    leftover = tmp_path / "0000000001.data.repair"
    leftover.write_bytes((tmp_path / "0000000001.data").read_bytes())
    with bitcask.open(tmp_path, readonly=True) as db:  # readonly changes nothing
        assert {k: db.get(k) for k in model} == model
    assert leftover.exists()
    with bitcask.open(tmp_path) as db:
        assert {k: db.get(k) for k in model} == model
    assert not leftover.exists()
    leftover.write_bytes(b"partial")
    bitcask.repair(tmp_path)
    assert not leftover.exists()


def test_a_backup_killed_mid_copy_leaves_nothing_under_its_name(tmp_path: Path) -> None:
    # The copy is staged in a hidden sibling and renamed into place once complete: a
    # SIGKILL (here: os._exit from inside the copy of the second file) used to leave
    # the first files under dest, a store that opened with keys missing.
    store = tmp_path / "store"
    with bitcask.open(store, sync="never", max_file_size=1024) as db:
        for i in range(60):
            db.put(b"k%02d" % i, b"v" * 100)
    dest = tmp_path / "backup"
    code = (
        "import os, shutil, bitcask\n"
        "real, n = shutil.copyfileobj, [0]\n"
        "def dying(*a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 2: os._exit(9)\n"
        "    return real(*a, **k)\n"
        "shutil.copyfileobj = dying\n"
        f"bitcask.open({str(store)!r}).backup({str(dest)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 9
    assert not dest.exists()
    stages = [p for p in tmp_path.iterdir() if p.name.startswith(".backup.backup-")]
    assert len(stages) == 1  # the dead process's part, hidden
    with bitcask.open(store) as db:  # the next backup removes it
        db.backup(dest)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".backup.backup-")]
    with bitcask.open(dest, readonly=True) as db:
        assert len(db) == 60
    assert bitcask.check(dest).ok


def test_an_open_that_cannot_write_its_pid_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The LOCK file's pid (for error messages only) is written after the flock is
    # taken; EIO there (or ENOSPC on a full disk) failed the open and kept the flock
    # with its descriptor lost: StoreLockedError naming this process from then on.
    model = _store(tmp_path)
    pwrite = os.pwrite

    def failing(fd: int, data: bytes, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/LOCK"):
            raise OSError(errno.EIO, "Input/output error")
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)
    with bitcask.open(tmp_path) as db:
        db.put(b"more", b"1")
    monkeypatch.undo()
    with bitcask.open(tmp_path) as db:
        assert {k: db.get(k) for k in model} == model
        assert db.get(b"more") == b"1"
