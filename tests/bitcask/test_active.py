"""The preallocated, mapped active file (bitcask/_active.py): crashes and full disks.

Real files throughout: a child process SIGKILLed between two records, crashed stores
left by ``_abandon`` (the process-death helper) and then edited as an interrupted
copy would leave them, and ENOSPC injected where space is reserved
(``_io.reserve``, i.e. posix_fallocate) together with ``_io.write`` (a full disk
fails both; the health probe writes through ``_io.write``).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from bitcask import ReadOnlyError, StoreIOError, _active, _health, _io
from bitcask._datafile import (
    FILE_HEADER_SIZE,
    OPEN_FILE,
    data_name,
    encode_file_header,
    is_open_file,
    list_data_files,
    map_file,
)
from bitcask._record import BATCH_BEGIN, BATCH_COMMIT, IN_BATCH, encode, encode_marker

ROOT = Path(__file__).resolve().parents[2]


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _newest(path: Path) -> Path:
    return path / data_name(list_data_files(str(path))[-1])


def _crashed(path: Path, **options: object) -> tuple[Path, int]:
    """A store whose writer died with k0..k9 written: (its active file, written size)."""
    db = bitcask.open(path, sync="never", **options)  # type: ignore[arg-type]
    for i in range(10):
        db.put(b"k%d" % i, b"v%d" % i)
    written = db.files.offset
    db._abandon()
    active = _newest(path)
    assert is_open_file(active.read_bytes()) and active.stat().st_size > written
    return active, written


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import bitcask
    db = bitcask.open(sys.argv[1], sync=sys.argv[2])
    for i in range(200):
        db.put(b"k%03d" % i, b"v%03d" % i)
        os.write(1, b"ack %d\\n" % i)
    os.write(1, b"idle\\n")
    time.sleep(60)
    """
)


@pytest.mark.parametrize("sync", ["never", "always"])
def test_sigkill_between_two_records_in_the_mapping(tmp_path: Path, sync: str) -> None:
    """Killed between two appends: every acknowledged record is there, nothing after,
    no damage reported; the writer open trims the unwritten tail and seals the file."""
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(store), sync], stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    acked = []
    try:
        while True:
            line = child.stdout.readline()
            assert line, "the child died before it was idle"
            if line == b"idle\n":
                break
            acked.append(int(line.split()[1]))
        active = _newest(store)
        before = active.read_bytes()
        assert is_open_file(before)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert acked == list(range(200))
    with bitcask.open(store, readonly=True) as ro:  # a readonly open changes nothing
        assert len(ro) == 200 and ro.recovery.skipped_bytes == 0
    assert active.read_bytes() == before
    with bitcask.open(store, sync="never") as db:
        rec = db.recovery
        assert (rec.truncated_bytes, rec.corrupt_records, rec.skipped_bytes) == (0, 0, 0)
        assert rec.events == ()
        assert dict(db.items()) == {b"k%03d" % i: b"v%03d" % i for i in range(200)}
    data = active.read_bytes()
    assert data[:FILE_HEADER_SIZE] == encode_file_header(int(active.name[:10]))
    assert data[FILE_HEADER_SIZE:] == before[FILE_HEADER_SIZE : len(data)]
    assert not before[len(data) :].strip(b"\0"), "only zeros were trimmed"


def test_unwritten_tail_is_not_damage_and_is_trimmed(tmp_path: Path) -> None:
    active, written = _crashed(tmp_path)
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.truncated_bytes == 0 and db.recovery.events == ()
        assert db.get(b"k9") == b"v9"
        assert active.stat().st_size == written  # sealed at open
        assert not is_open_file(active.read_bytes())
        db.put(b"after", b"1")
    with bitcask.open(tmp_path, sync="never") as db:
        assert len(db) == 11 and db.recovery.events == ()


def test_a_hint_does_not_keep_the_unwritten_tail(tmp_path: Path) -> None:
    """`check` finds a crashed store sound and `repair` hints its flagged file as it
    is; the next writer open still scans that file, trims the tail and seals it."""
    active, written = _crashed(tmp_path)
    assert bitcask.check(tmp_path).ok
    bitcask.repair(tmp_path)
    with bitcask.open(tmp_path, sync="never") as db:
        assert len(db) == 10 and db.recovery.truncated_bytes == 0
        assert active.stat().st_size == written and not is_open_file(active.read_bytes())
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.hinted_files >= 1 and db.recovery.scanned_files == 0


def test_zeros_after_a_sealed_file_are_damage(tmp_path: Path) -> None:
    """Only a file flagged OPEN_FILE may end in unwritten zeros: in a sealed file a
    zeroed range is reported, as any damage."""
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"a", b"1")
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"b", b"2")
    first = tmp_path / data_name(list_data_files(str(tmp_path))[0])
    assert not is_open_file(first.read_bytes())
    with first.open("ab") as f:
        f.write(bytes(100))
    with bitcask.open(tmp_path, sync="never", hint_files=False) as db:
        assert db.get(b"a") == b"1" and db.get(b"b") == b"2"
        assert db.recovery.skipped_bytes == 100, db.recovery


def _append_raw(active: Path, offset: int, data: bytes) -> None:
    fd = os.open(active, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _batch(keys: list[bytes]) -> bytes:
    recs = [encode(IN_BATCH, 1, 0, k, b"new" * 50) for k in keys]
    n = len(recs)
    return encode_marker(BATCH_BEGIN, n, 1) + b"".join(recs) + encode_marker(BATCH_COMMIT, n, 1)


@pytest.mark.parametrize(
    "hole",
    [
        pytest.param(slice(0, 4), id="crc-not-stored"),
        pytest.param(slice(0, 32), id="first-32-bytes-stored-last"),
        pytest.param(slice(4, 300), id="middle-hole"),
    ],
)
def test_interrupted_copy_of_a_batch_is_a_torn_tail(tmp_path: Path, hole: slice) -> None:
    """A SIGKILL inside a copy can leave any subset of its bytes but, since the CRC of
    its first record is stored last, never that CRC without the rest: the batch is
    dropped whole as the torn tail, nothing is reported corrupt, older values stay."""
    active, written = _crashed(tmp_path)
    batch = bytearray(_batch([b"k1", b"k2", b"k3"]))
    if hole.start == 0:
        batch[hole] = bytes(hole.stop)
    else:  # the CRC not yet stored, and a hole in what was copied before it
        batch[:4] = bytes(4)
        batch[hole] = bytes(hole.stop - hole.start)
    _append_raw(active, written, bytes(batch))
    with bitcask.open(tmp_path, sync="never") as db:
        rec = db.recovery
        assert rec.corrupt_records == 0 and rec.skipped_bytes == 0, rec
        assert 0 < rec.truncated_bytes <= len(batch)
        assert [db.get(b"k%d" % i) for i in range(1, 4)] == [b"v1", b"v2", b"v3"]
        assert active.stat().st_size == written
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.truncated_bytes == 0 and len(db) == 10


def test_crash_during_rotation_trims_both_files(tmp_path: Path) -> None:
    """New file created, old one not yet sealed: two flagged files, both trimmed; the
    new one, with no record, is dropped."""
    active, written = _crashed(tmp_path)
    fid = int(active.name[:10])
    nxt = _active.ActiveFile.create(str(tmp_path / data_name(fid + 1)), fid + 1, 1 << 20, False)
    nxt.close()
    assert is_open_file((tmp_path / data_name(fid + 1)).read_bytes())
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.truncated_bytes == 0 and db.recovery.events == ()
        assert len(db) == 10
        assert active.stat().st_size == written
        assert fid + 1 not in list_data_files(str(tmp_path))[:-1]
    assert (tmp_path / data_name(fid + 1)).exists() is False


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """ENOSPC from every reservation and every write to a file that needs new blocks
    (the probe's too, and a new file's header); the active file's reserved space
    still takes its copies. Returns 'space freed'."""
    real_reserve, real_write = _io.reserve, _io.write

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(fd: object, data: bytes) -> None:
        if isinstance(fd, int):  # a file's write needs new blocks
            no_space()
        real_write(fd, data)  # type: ignore[arg-type]  # the active file: space reserved

    monkeypatch.setattr(_io, "reserve", no_space)
    monkeypatch.setattr(_io, "write", write)

    def freed() -> None:
        monkeypatch.setattr(_io, "reserve", real_reserve)
        monkeypatch.setattr(_io, "write", real_write)

    return freed


def test_disk_full_exactly_at_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The active file's space was reserved up front, so filling it never fails; the
    disk is full when the next file must be created: a clean ENOSPC for the put that
    needs it, the store stays readable, writes are refused until space frees, then
    resume by themselves. Nothing acknowledged is lost."""
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    monkeypatch.setattr(_health, "PROBE_MAX", 0.1)
    db = bitcask.open(tmp_path, sync="never", max_file_size=4096)
    freed = None
    acked: dict[bytes, bytes] = {}
    try:
        files = len(list_data_files(str(tmp_path)))
        i = 0
        while True:
            key, value = b"k%04d" % i, b"v" * 100
            if db.files.offset + 200 > 4096 and freed is None:
                freed = _full_disk(monkeypatch)  # the disk fills: the next file won't fit
            try:
                db.put(key, value)
            except StoreIOError as exc:
                assert exc.errno == errno.ENOSPC and freed is not None
                break
            acked[key] = value
            i += 1
        assert freed is not None
        assert len(list_data_files(str(tmp_path))) == files  # no half-made file left
        _until(lambda: db.stats()["disk"]["attempts"] >= 2)  # probing, and failing
        with pytest.raises(ReadOnlyError):
            db.put(b"later", b"x")
        assert {k: db.get(k) for k in acked} == acked  # reads go on
        freed()
        _until(lambda: db.stats()["disk"]["state"] == "ok")
        db.put(b"later", b"v" * 100)  # as large as the refused put: rotates now
        acked[b"later"] = b"v" * 100
        assert len(list_data_files(str(tmp_path))) == files + 1
    finally:
        db.close()
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == acked
        assert db.recovery.truncated_bytes == 0 and db.recovery.events == ()


def test_disk_full_when_the_active_file_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Space is reserved in steps: a step that cannot be reserved fails that put alone,
    cleanly (nothing copied), and the store heals like after a failed write."""
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    monkeypatch.setattr(_health, "PROBE_MAX", 0.1)
    monkeypatch.setattr(_active, "FIRST_RESERVE", 4096)
    monkeypatch.setattr(_active, "RESERVE_STEP", 4096)
    with bitcask.open(tmp_path, sync="never") as db:
        for i in range(20):
            db.put(b"k%d" % i, b"v" * 100)  # 20 x 132 bytes: the file grew once
        while db.files.offset + 200 < 8192:
            db.put(b"filler", b"f" * 100)
        freed = _full_disk(monkeypatch)
        with pytest.raises(StoreIOError) as info:
            for i in range(40):
                db.put(b"g%d" % i, b"v" * 100)
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(ReadOnlyError):
            db.put(b"later", b"x")
        freed()
        _until(lambda: db.stats()["disk"]["state"] == "ok")
        db.put(b"later", b"x")
        keys = set(db.keys())
    with bitcask.open(tmp_path, sync="never") as db:
        assert set(db.keys()) == keys and b"later" in keys
        assert db.recovery.truncated_bytes == 0 and db.recovery.events == ()


def test_a_nearly_full_disk_takes_writes_until_the_bytes_themselves_do_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reserving the next step fails on a nearly full disk: the bytes the write needs are
    reserved instead, so writes go on until they really do not fit (a 4 MiB volume
    refused them with 1.9 MiB free), and then every key written still answers."""
    monkeypatch.setattr(_active, "FIRST_RESERVE", 4096)
    monkeypatch.setattr(_active, "RESERVE_STEP", 64 << 10)
    budget = 100_000  # bytes of the active file the "disk" can hold
    real_reserve = _io.reserve

    def small_disk(fd: int, offset: int, length: int) -> None:
        if offset + length > budget:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        real_reserve(fd, offset, length)

    monkeypatch.setattr(_io, "reserve", small_disk)
    written: dict[bytes, bytes] = {}
    with bitcask.open(tmp_path, sync="never") as db:
        with pytest.raises(StoreIOError) as info:
            for i in range(2000):  # 2000 x ~130 bytes: more than the budget
                key, value = b"k%04d" % i, b"%04d" % i * 25
                db.put(key, value)
                written[key] = value
        assert info.value.errno == errno.ENOSPC
        # the last record that fitted ends within one record of the budget, not a
        # whole step (64 KiB) short of it
        assert budget - 200 < db.files.offset <= budget
        assert {k: db.get(k) for k in written} == written
    monkeypatch.setattr(_io, "reserve", real_reserve)
    with bitcask.open(tmp_path, sync="never") as db:
        assert {k: db.get(k) for k in db} == written
        assert db.recovery.events == ()


def test_failed_large_write_leaves_none_of_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch written with pwrite (_PWRITE_MIN and more) that fails part way (EIO after
    some whole records landed) leaves none of them: not after the crash, not after a
    later, smaller write."""
    monkeypatch.setattr(_health, "PROBE_FIRST", 0.05)
    monkeypatch.setattr(_health, "PROBE_MAX", 0.1)
    real_pwrite = os.pwrite
    calls = []

    def torn_pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:  # half of the batch lands, then the disk fails
            return real_pwrite(fd, memoryview(data)[: len(data) // 2], offset)
        raise OSError(errno.EIO, "injected EIO")

    ops = [("put", b"b%03d" % i, b"v" * 200) for i in range(200)]  # ~45 KiB
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"first", b"1")
    monkeypatch.setattr(os, "pwrite", torn_pwrite)
    with pytest.raises(StoreIOError):
        db.write_batch(ops)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert len(calls) == 2
    _until(lambda: db.stats()["disk"]["state"] == "ok")
    db.put(b"second", b"2")  # smaller than the failed batch: its bytes stay past it
    db._abandon()
    with bitcask.open(tmp_path, sync="never") as db:
        assert sorted(db.keys()) == [b"first", b"second"]
        assert db.recovery.events == ()


def test_reserved_space_and_flag_while_open(tmp_path: Path) -> None:
    """While open, the active file is flagged and holds reserved space; close seals it
    to exactly its records, with the header every sealed file has."""
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"k", b"v")
    active = _newest(tmp_path)
    head = active.read_bytes()[:FILE_HEADER_SIZE]
    fid = int(active.name[:10])
    assert head == encode_file_header(fid, OPEN_FILE)
    assert active.stat().st_blocks * 512 >= _active.FIRST_RESERVE
    size = db.files.offset
    db.close()
    assert active.stat().st_size == size
    assert active.read_bytes()[:FILE_HEADER_SIZE] == encode_file_header(fid)


def test_readers_beside_the_writer_survive_its_seal(tmp_path: Path) -> None:
    """A readonly open (or check) of a live store must not map the active file: the
    writer truncates its reserved tail on sealing, and a mapped page past the end
    of the file would SIGBUS the reader. It reads a copy instead."""
    db = bitcask.open(tmp_path, sync="never", max_file_size=1 << 20)
    for i in range(100):
        db.put(b"k%03d" % i, b"v" * 100)
    ro = bitcask.open(tmp_path, readonly=True)
    try:
        for i in range(100, 20_000):  # rotations seal (truncate) files the reader loaded
            db.put(b"k%03d" % i, b"v" * 100)
        db.close()
        assert all(ro.get(b"k%03d" % i) == b"v" * 100 for i in range(100))
        assert ro.recovery.skipped_bytes == 0 and ro.recovery.events == ()
    finally:
        ro.close()
        db.close()
    assert bitcask.check(tmp_path).ok


def test_map_file_copies_a_file_its_writer_may_truncate(tmp_path: Path) -> None:
    """What every reader of data files maps (recovery, check, merge) is safe to read
    whole after the writer sealed the file under it (a mapping would SIGBUS here)."""
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"k", b"v")
    active = _newest(tmp_path)
    reserved = active.stat().st_size
    view = map_file(str(active))
    assert view is not None and len(view) == reserved
    db.close()  # seals: the file is truncated to its one record
    assert active.stat().st_size < reserved
    data = bytes(view)  # every page, including those past the new end of file
    assert data[: active.stat().st_size][FILE_HEADER_SIZE:] == active.read_bytes()[16:]
