"""Snapshots: a pinned consistent cut, copied out chunk by chunk; merges skip pinned files."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest

import bitcask
from bitcask import MergeInProgressError
from bitcask.errors import SnapshotNotFoundError
from bitcask.snapshot import (
    MAX_CHUNK,
    Pins,
    Snapshot,
    pin_sealed,
    read_chunk,
    release,
    release_owner,
    seal,
    take_snapshot,
)


def copy_out(db: bitcask.Bitcask, snap: Snapshot, dest: Path, chunk: int = 4096) -> None:
    """What a backup client does: read every file in chunks and check its CRC."""
    dest.mkdir()
    for f in snap.files:
        crc, offset = 0, 0
        with open(dest / f.name, "wb") as out:
            while offset < f.size:
                data = read_chunk(db, snap.id, f.name, offset, chunk)
                assert data, f"{f.name}: no bytes at {offset} < {f.size}"
                out.write(data)
                crc = zlib.crc32(data, crc)
                offset += len(data)
        assert crc == f.crc, f.name


def fill(db: bitcask.Bitcask, n: int, tag: bytes) -> dict[bytes, bytes]:
    model = {}
    for i in range(n):
        key, value = b"k%04d" % i, tag + b"-%d" % i + b"." * 50
        db.put(key, value)
        model[key] = value
    return model


def test_snapshot_copy_opens_with_hints_only(tmp_path: Path) -> None:
    with bitcask.open(tmp_path / "db", sync="never", max_file_size=8192) as db:
        model = fill(db, 300, b"a")
        for i in range(0, 300, 3):
            db.delete(b"k%04d" % i)
            del model[b"k%04d" % i]
        with db.batch() as b:
            b.put(b"batch1", b"x")
            b.put(b"batch2", b"y")
        model |= {b"batch1": b"x", b"batch2": b"y"}
        snap = take_snapshot(db, owner="t")
        db.put(b"after", b"not in the snapshot")
        names = [f.name for f in snap.files]
        assert all(n.endswith((".data", ".hint")) for n in names)
        assert sum(n.endswith(".hint") for n in names) == sum(n.endswith(".data") for n in names)
        assert snap.manifest()["keys"] == len(model)
        copy_out(db, snap, tmp_path / "copy")
        assert snap.complete
        release(db, snap.id)
    with bitcask.open(tmp_path / "copy") as copy:
        assert copy.recovery.scanned_files == 0
        assert copy.recovery.events == ()
        assert dict(copy.items()) == model


def test_merge_skips_pinned_files_and_reclaims_them_after_release(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_file_size=4096) as db:
        fill(db, 200, b"old")
        snap = take_snapshot(db, owner="t")
        pinned = set(snap.fids)
        model = fill(db, 200, b"new")  # every old value is now dead
        report = db.merge()
        assert not pinned & set(report.inputs)
        for fid in pinned:
            assert os.path.exists(tmp_path / f"{fid:010d}.data")
        copy_out(db, snap, tmp_path.parent / "copy")
        release(db, snap.id)
        report = db.merge()
        assert pinned <= set(report.inputs)
        for fid in pinned:
            assert not os.path.exists(tmp_path / f"{fid:010d}.data")
        assert all(db.get(k) == v for k, v in model.items())
    with bitcask.open(tmp_path.parent / "copy") as copy:
        assert copy.get(b"k0007") == b"old-7" + b"." * 50


def test_no_merge_between_pin_and_cut(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        fill(db, 10, b"v")
        snap = pin_sealed(db, owner="t")
        with pytest.raises(MergeInProgressError):
            db.merge()
        seal(db, snap)
        db.merge()  # the cut is taken: merges run again (and skip the pinned files)
        release(db, snap.id)


def test_pins_expire_after_their_idle_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    with bitcask.open(tmp_path, sync="never") as db:
        db._pins = Pins(clock=lambda: now[0])
        fill(db, 10, b"v")
        snap = take_snapshot(db, owner="t", timeout=30)
        assert db._pins.pinned()
        now[0] += 20
        read_chunk(db, snap.id, snap.files[0].name, 0, 10)  # pushes the deadline back
        now[0] += 20
        assert db._pins.pinned()
        assert not caplog.records
        now[0] += 31
        with caplog.at_level(logging.WARNING, logger="bitcask"):
            assert db._pins.pinned() == set()
        # the lapse is said once, naming the snapshot and the idle time
        assert [r.getMessage() for r in caplog.records] == [
            f"snapshot {snap.id} lapsed: no read for 30 s, its files are no longer kept "
            "from merges and reading it now fails"
        ]
        with pytest.raises(SnapshotNotFoundError):
            read_chunk(db, snap.id, snap.files[0].name, 0, 10)


def test_release_owner_and_read_bounds(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        fill(db, 50, b"v")
        owner = object()
        a = take_snapshot(db, owner=owner)
        b = take_snapshot(db, owner=owner)
        other = take_snapshot(db, owner="other")
        first = a.files[0]
        assert read_chunk(db, a.id, first.name, first.size, 10) == b""
        assert len(read_chunk(db, a.id, first.name, 0, 10 * MAX_CHUNK)) == min(
            first.size, MAX_CHUNK
        )
        with pytest.raises(ValueError):
            read_chunk(db, a.id, "LOCK", 0, 10)
        with pytest.raises(ValueError):
            read_chunk(db, a.id, first.name, -1, 10)
        assert release_owner(db, owner) == 2
        for snap in (a, b):
            with pytest.raises(SnapshotNotFoundError):
                read_chunk(db, snap.id, first.name, 0, 10)
        assert len(db._pins) == 1
        assert release(db, other.id) is other
        assert release(db, other.id) is None


def test_readonly_store_cannot_snapshot(tmp_path: Path) -> None:
    with bitcask.open(tmp_path) as db:
        db.put(b"k", b"v")
    with bitcask.open(tmp_path, readonly=True) as ro, pytest.raises(bitcask.ReadOnlyError):
        take_snapshot(ro)


def test_crc_cache_holds_only_the_files_the_store_has(tmp_path: Path) -> None:
    # Every file a snapshot described stayed in the CRC cache after a merge deleted
    # it (up to 100,000 entries, 24 MB, then all dropped at once): a store backed up
    # and merged in a loop grew with the backups, not the data. Now a snapshot keeps
    # the CRCs of the files the store still has, and each copy still checks out.
    with bitcask.open(tmp_path / "db", sync="never", max_file_size=4096) as db:
        for r in range(12):
            fill(db, 100, b"r%d" % r)  # the last round's values make the others dead
            snap = take_snapshot(db, owner="t")
            on_disk = set(os.listdir(tmp_path / "db"))
            cached = {name for name, _ in db.merges.pins._crcs}
            assert {f.name for f in snap.files} <= cached <= on_disk, sorted(cached - on_disk)
            copy_out(db, snap, tmp_path / f"copy{r}")  # the cached CRCs are right
            release(db, snap.id)
            db.merge()
    with bitcask.open(tmp_path / "copy11") as copy:
        assert copy.get(b"k0042") == b"r11-42" + b"." * 50
