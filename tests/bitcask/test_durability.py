"""Disk errors, the directory lock, readonly opens, and backups."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from bitcask import ReadOnlyError, StoreIOError, StoreLockedError, _health, _io

ROOT = Path(__file__).resolve().parents[2]


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_failed_write_refuses_writes_then_heals_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on write: nothing acknowledged, the tail cut back, writes refused while
    the disk stays full (probes fail), then resumed by themselves once it is not."""
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    monkeypatch.setattr(_health, "PROBE_MAX", 0.1)
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"good", b"1")
    size_before = db.stats()["disk_bytes"]
    real_write = _io.write

    def full(fd: int, data: bytes = b"") -> None:
        real_write(fd, data[: len(data) // 2])  # a partial write, then the error
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_io, "write", full)  # the probe writes through _io too
    with pytest.raises(StoreIOError) as info:
        db.put(b"bad", b"2")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    _until(lambda: db.stats()["disk"]["attempts"] >= 2)  # probing, and failing
    with pytest.raises(ReadOnlyError):
        db.put(b"later", b"3")
    with pytest.raises(ReadOnlyError):
        db.write_batch([("delete", b"good")])
    assert db.get(b"good") == b"1" and db.get(b"bad") is None
    stats = db.stats()
    assert stats["readonly"] is True and os.strerror(errno.ENOSPC) in stats["readonly_reason"]
    assert stats["disk"]["state"] == "write_failed" and stats["disk"]["last_attempt"]
    assert stats["disk_bytes"] == size_before  # the partial append was cut back

    monkeypatch.setattr(_io, "write", real_write)  # space is back
    _until(lambda: db.stats()["disk"]["state"] == "ok")
    db.put(b"later", b"3")
    assert db.readonly_reason is None and db.stats()["readonly"] is False
    db.close()
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == {b"good": b"1", b"later": b"3"}
        assert db.recovery.truncated_bytes == 0


def test_failed_fsync_refuses_writes_until_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    db = bitcask.open(tmp_path, sync="always")
    db.put(b"good", b"1")

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(_io, "fsync", broken)
    with pytest.raises(StoreIOError) as info:
        db.put(b"bad", b"2")
    assert info.value.errno == errno.EIO
    monkeypatch.undo()  # the disk works again: still no writes until a restart
    time.sleep(0.3)
    with pytest.raises(ReadOnlyError):
        db.put(b"later", b"3")
    disk = db.stats()["disk"]
    assert disk["state"] == "fsync_failed" and disk["attempts"] == 0
    assert "restart" in (db.readonly_reason or "")
    assert db.get(b"good") == b"1" and db.get(b"bad") is None
    db.close()
    with bitcask.open(tmp_path, sync="always") as db:
        db.put(b"later", b"3")
        assert dict(db.items()) == {b"good": b"1", b"later": b"3"}


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
def test_out_of_descriptors_at_rotation_is_not_a_disk_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    db = bitcask.open(tmp_path, sync="never", max_file_size=256)
    db.put(b"a", b"x" * 100)
    real_open = os.open

    def no_fds(path: str, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".data"):
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_fds)
    with pytest.raises(StoreIOError) as info:
        for i in range(5):  # the next rotation needs a new file
            db.put(b"k%d" % i, b"y" * 100)
    assert info.value.errno == code
    monkeypatch.undo()
    assert db.readonly_reason is None and db.stats()["disk"]["state"] == "ok"
    for i in range(5):
        db.put(b"k%d" % i, b"y" * 100)  # the store stayed writable
    db.close()
    with bitcask.open(tmp_path, sync="never") as db:
        assert sorted(db.keys()) == [b"a"] + [b"k%d" % i for i in range(5)]


def test_full_disk_at_open_serves_reads_and_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"kept", b"1")
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    monkeypatch.setattr(_health, "PROBE_MAX", 0.1)
    real_write = _io.write

    def full(fd: int, data: bytes = b"") -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_io, "write", full)
    db = bitcask.open(tmp_path, sync="never")
    try:
        assert db.get(b"kept") == b"1"
        assert (db.readonly_reason or "").startswith("disk full at start")
        with pytest.raises(ReadOnlyError):
            db.put(b"new", b"2")
        monkeypatch.setattr(_io, "write", real_write)
        _until(lambda: db.stats()["disk"]["state"] == "ok")
        db.put(b"new", b"2")
    finally:
        db.close()
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == {b"kept": b"1", b"new": b"2"}


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


def test_repair_on_a_filling_disk_fails_instead_of_truncating_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk with 20 KB left, as Linux fills one: write() takes what fits and
    # returns short, the next write() raises ENOSPC. repair() used to take the short
    # count for the whole file and rename a 20 KB prefix over a 100 KB data file:
    # "1 ranges dropped", and 240 of 300 keys gone.
    store = tmp_path / "s"
    value = b"." * 300
    with bitcask.open(store, sync="never") as db:
        for i in range(300):
            db.put(b"k%03d" % i, b"v%03d" % i + value)
    (data,) = store.glob("*.data")
    with open(data, "r+b") as f:  # one flipped value byte: repair rewrites this file
        f.seek(16 + 10 * 333 + 40)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0xFF]))
    left = [20_000]
    real_write = os.write

    def filling(fd: int, data: bytes) -> int:
        if not os.readlink(f"/proc/self/fd/{fd}").startswith(str(store)):
            return real_write(fd, data)
        if left[0] == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(memoryview(data)[: left[0]]))
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", filling)
    monkeypatch.setattr(_io, "_os_write", filling)
    with pytest.raises(OSError) as info:
        bitcask.repair(store)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not list(store.glob("*.repair"))  # the partial copy does not hold the space
    with bitcask.open(store) as db:  # the original is untouched: only k010 is damaged
        for i in range(300):
            if i != 10:
                assert db.get(b"k%03d" % i) == b"v%03d" % i + value
    report = bitcask.repair(store)  # space is back
    assert report.tombstoned == (b"k010",)
    with bitcask.open(store) as db:
        assert len(db) == 299 and db.get(b"k299") == b"v299" + value
