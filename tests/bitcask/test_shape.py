"""The engine's shape: one write path, hints kept as records are written, one owner per file.

- Every hint the engine writes from its journal (sealed at rotation, or at close) is
  byte for byte the hint a scan of the same file builds.
- close() never rescans the active file; a crash before the seal leaves no hint and
  the next open scans that file instead.
- put() and a one-op write_batch() (the same write path) write the same record and
  leave the same keydir.
- A mapped (sealed) file holds at most one descriptor (its mapping's).
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import bitcask
import bitcask._health
import bitcask._io
from bitcask import _files
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, hint_name, map_file, scan
from bitcask._hint import build_hint

CLOCK = 1_700_000_000.0


def workload(db: bitcask.Bitcask) -> None:
    """Every kind of write: puts, overwrites, TTLs, deletes, batches, groups, planned ops."""
    for i in range(40):
        db.put(b"k%03d" % i, b"v%d" % i * (i % 7 + 1))
    db.put(b"ttl", b"x", ttl=3600)
    db.put(b"k001", b"again")
    assert db.delete(b"k002")
    assert not db.delete(b"absent")
    db.write_batch(
        [
            ("put", b"b1", b"1"),
            ("put", b"b2", b"2", 60),
            ("delete", b"k003"),
            ("put", b"b3", b"3"),
            ("delete", b"b3"),  # deletes a value of this very batch (this file)
            ("put", b"k004", b"over"),
        ]
    )
    db.write_group(
        [
            [("put", b"g1", b"1")],
            [("put", b"g2", b"2"), ("delete", b"k005")],
            [("delete", b"k006")],
            [("put", b"g3", b"3", 30)],
        ]
    )
    db.incr(b"n", 5)
    db.append(b"k007", b"+")
    db.write_batch([("put", b"k%03d" % i, b"batch") for i in range(10, 30)])
    db.put(b"ttl", b"y")  # a TTL key overwritten without one


def scan_hints(path: Path) -> dict[str, tuple[bytes, bytes]]:
    """For every hint in ``path``: (its bytes, the hint a scan of its data file builds)."""
    out = {}
    for data in sorted(path.glob("*.data")):
        fid = int(data.stem)
        hint = path / hint_name(fid)
        if not hint.exists():
            continue
        size = data.stat().st_size
        mm = map_file(str(data))
        assert mm is not None
        rebuilt = build_hint(fid, size, scan(mm, FILE_HEADER_SIZE, size, ScanIssues()))
        out[hint.name] = (hint.read_bytes(), rebuilt)
    return out


@pytest.mark.parametrize(
    "opts",
    [
        pytest.param({}, id="one-file"),
        pytest.param({"max_file_size": 400}, id="rotating"),
    ],
)
def test_journal_hints_equal_scanned_hints(tmp_path: Path, opts: dict[str, Any]) -> None:
    with bitcask.open(tmp_path, sync="never", clock=lambda: CLOCK, **opts) as db:
        workload(db)
        want = dict(db.items())
    hints = scan_hints(tmp_path)
    assert len(hints) == len(list(tmp_path.glob("*.data")))
    for name, (written, rebuilt) in hints.items():
        assert written == rebuilt, name
    with bitcask.open(tmp_path, sync="never", clock=lambda: CLOCK) as db:
        assert db.recovery.scanned_files == 0
        assert dict(db.items()) == want
        assert db.ttl(b"b2") is not None and db.ttl(b"ttl") is None


def test_close_builds_the_hint_without_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("close() scanned a data file")

    with bitcask.open(tmp_path, sync="never") as db:
        db.write_batch([("put", b"k%06d" % i, b"v" * 20) for i in range(5000)])
        db.delete(b"k000001")
        monkeypatch.setattr(_files, "scan", no_scan)
    monkeypatch.undo()
    (written, rebuilt) = scan_hints(tmp_path)[hint_name(1)]
    assert written == rebuilt
    with bitcask.open(tmp_path, sync="never") as db:
        assert (db.recovery.hinted_files, db.recovery.scanned_files) == (1, 0)
        assert len(db) == 4999


def test_a_crash_before_the_seal_leaves_no_hint_and_the_file_is_scanned(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path, sync="never")
    db.write_batch([("put", b"k%03d" % i, b"v") for i in range(100)])
    db.delete(b"k005")
    db._abandon()  # as if the process died: the journal is lost with it
    assert not list(tmp_path.glob("*.hint"))
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.scanned_files == 1
        assert len(db) == 99 and db.get(b"k005") is None


def records(path: Path) -> list[tuple[int, int, int, bytes]]:
    """(offset, size, flags, key) of every record, in file order, over all files."""
    out = []
    for data in sorted(path.glob("*.data")):
        size = data.stat().st_size
        mm = map_file(str(data))
        assert mm is not None
        out += [(r[0], r[1], r[2], r[5]) for r in scan(mm, FILE_HEADER_SIZE, size, ScanIssues())]
    return out


def test_put_is_the_one_op_batch(tmp_path: Path) -> None:
    ops: list[tuple[bytes, bytes, float | None]] = [
        (b"a", b"1", None),
        (b"b", b"22", 60.0),
        (b"a", b"333", None),
        (b"b", b"4", None),
        (b"c" * 50, b"5" * 300, None),
    ]
    stores: list[object] = []
    for how in ("put", "batch"):
        path = tmp_path / how
        with bitcask.open(path, sync="never", max_file_size=400, clock=lambda: CLOCK) as db:
            for key, value, ttl in ops:
                if how == "put":
                    db.put(key, value, ttl)
                else:
                    db.writer.write_batch([("put", key, value, ttl)], _single=True)
            state = (dict(db.keydir.map), dict(db.keydir.expiry), db.stats()["files"])
        stores.append((state, records(path)))
    assert stores[0] == stores[1]


def data_fds(path: Path) -> list[str]:
    """The descriptors this process holds on data files under ``path``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)) and target.endswith(".data"):
            out.append(target)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_each_mapped_file_holds_at_most_one_descriptor(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_file_size=64) as db:
        for i in range(30):
            db.put(b"k%02d" % i, b"v" * 40)  # one file per record
        assert len(db.stats()["files"]) >= 30
        # The background hint writer fdatasyncs each sealed file through a descriptor
        # of its own before it installs the file's hint (a power cut must not keep a
        # hint past its data): one moment each, over once every hint is in place.
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("*.hint"))) < 29 and time.monotonic() < deadline:
            time.sleep(0.01)
        held = Counter(data_fds(tmp_path))
        active = str(tmp_path / f"{db.stats()['active_file']:010d}.data")
        # the active file: its append descriptor, its reader and its mapping's
        assert held.pop(active) <= 3
        # a sealed file: only its mapping's (mmap keeps a dup of the descriptor)
        assert len(held) == 29 and max(held.values()) == 1
        assert all(db.get(b"k%02d" % i) == b"v" * 40 for i in range(30))
    assert data_fds(tmp_path) == []
    with bitcask.open(tmp_path, sync="never", readonly=True) as db:
        assert len(db) == 30
        held = Counter(data_fds(tmp_path))
        assert len(held) == 30 and max(held.values()) == 1
    assert data_fds(tmp_path) == []


def test_journal_hint_of_new_keys_only(tmp_path: Path) -> None:
    # Every record a new key (the journal's shortcut): still the scanner's hint.
    with bitcask.open(tmp_path, sync="never", clock=lambda: CLOCK) as db:
        db.write_batch([("put", b"k%04d" % i, b"v") for i in range(500)])
        for i in range(500, 600):
            db.put(b"k%04d" % i, b"t", ttl=100 if i % 3 else None)
        db.write_group([[("put", b"g%d" % i, b"g", 5)] for i in range(10)])
    (written, rebuilt) = scan_hints(tmp_path)[hint_name(1)]
    assert written == rebuilt
    with bitcask.open(tmp_path, sync="never", clock=lambda: CLOCK) as db:
        assert db.recovery.scanned_files == 0
        assert len(db) == 610 and db.ttl(b"k0502") is not None and db.ttl(b"k0501") is None


def test_the_read_paths_literals_are_the_keydir_packing() -> None:
    # db.get spells the keydir's packing as literals (see the comment there).
    from bitcask import _keydir

    assert (_keydir.FID_SHIFT, _keydir.OFF_SHIFT) == (68, 32)
    assert (_keydir.OFF_MASK, _keydir.SIZE_MASK) == (0xFFFFFFFFF, 0xFFFFFFFF)
    loc = _keydir.pack(7, 123456, 789)
    assert (loc >> 68, (loc >> 32) & 0xFFFFFFFFF, loc & 0xFFFFFFFF) == (7, 123456, 789)


def test_a_failed_write_leaves_nothing_in_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ENOSPC mid-record (partial bytes, cut back): after the disk heals and the store
    # closes, the hint from the journal still equals the scanner's.
    monkeypatch.setattr(bitcask._health, "PROBE_FIRST", 0.01)
    monkeypatch.setattr(bitcask._health, "PROBE_MAX", 0.02)
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"good", b"1")
    real_write = bitcask._io.write

    def full(fd: int, data: bytes = b"") -> None:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bitcask._io, "write", full)
    with pytest.raises(bitcask.StoreIOError):
        db.write_batch([("put", b"bad", b"2"), ("delete", b"good")])
    monkeypatch.setattr(bitcask._io, "write", real_write)
    for _ in range(500):  # bounded: the probe heals within a few of its periods
        if db.disk_health()["state"] == "ok":
            break
        time.sleep(0.01)
    db.put(b"later", b"3")
    db.close()
    (written, rebuilt) = scan_hints(tmp_path)[hint_name(1)]
    assert written == rebuilt
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.scanned_files == 0
        assert dict(db.items()) == {b"good": b"1", b"later": b"3"}
