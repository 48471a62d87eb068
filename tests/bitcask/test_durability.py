"""Disk errors, the directory lock, readonly opens, and backups."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bitcask
from bitcask import ReadOnlyError, StoreIOError, StoreLockedError, _io

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "failing,sync",
    [
        pytest.param("write", "never", id="write-ENOSPC"),
        pytest.param("fsync", "always", id="fsync-EIO"),
    ],
)
def test_disk_error_turns_the_store_read_only_and_reads_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, sync: str
) -> None:
    db = bitcask.open(tmp_path, sync=sync)
    db.put(b"good", b"1")
    size_before = db.stats()["disk_bytes"]
    code = errno.ENOSPC if failing == "write" else errno.EIO
    real_write = _io.write

    def broken(fd: int, data: bytes = b"") -> None:
        if failing == "write":
            real_write(fd, data[: len(data) // 2])  # a partial write, then the error
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_io, failing, broken)
    with pytest.raises(StoreIOError) as info:
        db.put(b"bad", b"2")
    assert isinstance(info.value, OSError) and info.value.errno == code
    monkeypatch.undo()
    with pytest.raises(ReadOnlyError):
        db.put(b"later", b"3")
    with pytest.raises(ReadOnlyError):
        db.write_batch([("delete", b"good")])
    assert db.get(b"good") == b"1" and db.get(b"bad") is None
    assert db.readonly_reason is not None and os.strerror(code) in db.readonly_reason
    stats = db.stats()
    assert stats["readonly_reason"] == db.readonly_reason and stats["readonly"] is True
    assert stats["disk_bytes"] == size_before  # the partial append was cut back
    db.close()
    with bitcask.open(tmp_path, sync=sync) as db:
        assert dict(db.items()) == {b"good": b"1"}
        assert db.recovery.truncated_bytes == 0


_HOLDER = textwrap.dedent(
    """
    import sys, bitcask
    db = bitcask.open(sys.argv[1], sync="never")
    db.put(b"from-child", b"1")
    print("ready", flush=True)
    sys.stdin.readline()
    db.close()
    """
)


def test_second_writer_gets_store_locked_error_naming_the_pid(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            bitcask.open(tmp_path, sync="never")
        assert info.value.pid == child.pid and str(child.pid) in str(info.value)
        with pytest.raises(StoreLockedError):
            bitcask.repair(tmp_path)
        ro = bitcask.open(tmp_path, readonly=True)  # readonly opens work beside a writer
        try:
            assert ro.get(b"from-child") == b"1"
            with pytest.raises(ReadOnlyError):
                ro.put(b"x", b"y")
        finally:
            ro.close()
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)
    with bitcask.open(tmp_path, sync="never") as db:  # the lock went with the child
        assert db.get(b"from-child") == b"1"


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.kill()
    child.wait(timeout=30)
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"from-child") == b"1"


def test_two_writers_in_one_process_are_refused(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never"):
        with pytest.raises(StoreLockedError) as info:
            bitcask.open(tmp_path, sync="never")
        assert info.value.pid == os.getpid()


def test_readonly_sees_the_state_at_open(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        for i in range(50):
            db.put(b"k%02d" % i, b"v" * 30)
        ro = bitcask.open(tmp_path, readonly=True)
        try:
            db.put(b"new", b"after")
            db.delete(b"k01")
            db.merge()
            assert ro.get(b"new") is None
            assert ro.get(b"k01") == b"v" * 30  # merged-away files stay mapped
            assert len(ro) == 50
            assert ro.stats()["readonly"] is True
        finally:
            ro.close()
    with pytest.raises(FileNotFoundError):
        bitcask.open(tmp_path / "absent", readonly=True)


def test_backup_opens_as_a_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dest = tmp_path / "copy"
    with bitcask.open(src, sync="never", max_file_size=2048) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"value-%03d" % i)
        db.delete(b"k000")
        want = dict(db.items())
        db.backup(dest)
        db.put(b"after-backup", b"x")
        with pytest.raises(FileExistsError):
            db.backup(dest)
    assert bitcask.check(dest).ok
    with bitcask.open(dest, sync="never") as copy:
        assert dict(copy.items()) == want
        assert copy.recovery.scanned_files == 0


def test_readonly_open_retries_when_a_file_vanishes_mid_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bitcask import _recovery

    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v")
    real = _recovery.list_data_files
    calls = []

    def listing(path: str) -> list[int]:
        calls.append(path)
        ids = real(path)
        return [*ids, 999] if len(calls) == 1 else ids  # a merge removed file 999

    monkeypatch.setattr(_recovery, "list_data_files", listing)
    ro = bitcask.open(tmp_path, readonly=True)
    try:
        assert len(calls) == 2 and ro.get(b"k") == b"v"
    finally:
        ro.close()
