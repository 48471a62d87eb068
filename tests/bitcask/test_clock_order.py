"""The latest write wins whatever the wall clock did between two writes.

A clock stepped back an hour (NTP, a VM restored from a snapshot) between two writes
of one key gives the later record the smaller timestamp. No load path may prefer the
older record for it: recovery with and without hints, merge, repair and a reopen after
each all order records by file id, then offset (docs/format.md, "Time"). Each case
checks the record timestamps really went backwards, so it tests what it says.

The record timestamp is read from ``bitcask._record._time_ns`` (``timestamp_us``) and
put's inlined copy ``bitcask._writer._time_ns`` (time.time_ns both), the expiries from the store's
injectable ``clock``: both are moved together here, as a stepped system clock would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bitcask
import bitcask._record as record_mod
import bitcask._writer as writer_mod
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, scan

HOUR = 3600.0
T0 = 1_700_000_000.0


class WallClock:
    """The system clock as the engine reads it, moved by hand (steps, not drift)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def ns(self) -> int:
        return int(self.now * 1_000_000) * 1000


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Iterator[WallClock]:
    clock = WallClock()
    monkeypatch.setattr(writer_mod, "_time_ns", clock.ns)  # put's fast path
    monkeypatch.setattr(record_mod, "_time_ns", clock.ns)  # timestamp_us(): the rest
    yield clock


def _records(path: Path) -> list[tuple[int, int, bytes, int]]:
    """(file id, offset, key, timestamp µs) of every applying record, in load order."""
    out = []
    for name in sorted(os.listdir(path)):
        if not name.endswith(".data"):
            continue
        fid = int(name.split(".")[0])
        buf = (path / name).read_bytes()
        issues = ScanIssues()
        for off, _size, _flags, ts, _exp, key, _aux in scan(
            buf, FILE_HEADER_SIZE, len(buf), issues
        ):
            out.append((fid, off, key, ts))
    return out


def _put(db: bitcask.Bitcask, value: bytes) -> None:
    db.put(b"k", value)


def _batch(db: bitcask.Bitcask, value: bytes) -> None:
    db.write_batch([("put", b"other", value), ("put", b"k", value)])


def _group(db: bitcask.Bitcask, value: bytes) -> None:
    db.write_group([[("put", b"k", value)], [("put", b"g", value)]])


def _ttl(db: bitcask.Bitcask, value: bytes) -> None:
    db.put(b"k", value, ttl=10 * HOUR)


WRITES: list[object] = [
    pytest.param(_put, id="put"),
    pytest.param(_batch, id="atomic-batch"),
    pytest.param(_group, id="write-group"),
    pytest.param(_ttl, id="put-with-ttl"),
]


def _answers(path: Path, wall: WallClock, **opts: object) -> bytes | None:
    with bitcask.open(path, sync="never", clock=wall, **opts) as db:  # type: ignore[arg-type]
        return db.get(b"k")


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("rotate", [False, True], ids=["same-file", "across-rotation"])
def test_the_later_write_wins_after_the_clock_steps_back(
    tmp_path: Path, wall: WallClock, write: Callable[[bitcask.Bitcask, bytes], None], rotate: bool
) -> None:
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        write(db, b"v1")
        if rotate:
            db._rotate()
        wall.now -= HOUR
        write(db, b"v2")
        assert db.get(b"k") == b"v2"
    stamps = [ts for _fid, _off, key, ts in _records(tmp_path) if key == b"k"]
    assert len(stamps) == 2 and stamps[1] < stamps[0]  # the clock did go back
    # Every load path, each followed by a reopen.
    assert _answers(tmp_path, wall) == b"v2"  # hints (when sealed)
    assert _answers(tmp_path, wall, hint_files=False) == b"v2"  # scans only
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        db.merge()
        assert db.get(b"k") == b"v2"
    assert _answers(tmp_path, wall) == b"v2"
    assert _answers(tmp_path, wall, hint_files=False) == b"v2"
    bitcask.repair(tmp_path)
    assert _answers(tmp_path, wall) == b"v2"
    assert _answers(tmp_path, wall, readonly=True) == b"v2"


def test_a_delete_after_the_clock_steps_back_stays_a_delete(
    tmp_path: Path, wall: WallClock
) -> None:
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        db.put(b"k", b"v1")
        db.put(b"kept", b"x")
        db._rotate()
        wall.now -= HOUR
        assert db.delete(b"k")
        tomb_file = db._active_id
        db._rotate()
        wall.now -= HOUR
        db.put(b"late", b"y")  # a third file, two hours "before" the first
    for opts in ({}, {"hint_files": False}):
        with bitcask.open(tmp_path, sync="never", clock=wall, **opts) as db:  # type: ignore[arg-type]
            assert (db.get(b"k"), db.get(b"kept"), db.get(b"late")) == (None, b"x", b"y")
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        db._merge_files([tomb_file])  # its tombstone must stay: v1 is outside
    bitcask.repair(tmp_path)
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        assert (db.get(b"k"), db.get(b"kept"), db.get(b"late")) == (None, b"x", b"y")
        assert sorted(db) == [b"kept", b"late"]


def test_time_going_back_inside_many_writes_keeps_write_order(
    tmp_path: Path, wall: WallClock
) -> None:
    # A clock stepping back and forth between every write: the last write of each key
    # wins, whatever its timestamp, through hints, scans, merge and repair.
    expect: dict[bytes, bytes] = {}
    with bitcask.open(tmp_path, sync="never", clock=wall, max_file_size=512) as db:
        for i in range(60):
            wall.now = T0 + (HOUR if i % 2 else -HOUR) * (i % 7)
            key, value = b"k%d" % (i % 5), b"v%d" % i
            if i % 3:
                db.put(key, value)
            else:
                db.write_batch([("put", key, value), ("put", b"b", value)])
                expect[b"b"] = value
            expect[key] = value
    wall.now = T0
    for opts in ({}, {"hint_files": False}):
        with bitcask.open(tmp_path, sync="never", clock=wall, **opts) as db:  # type: ignore[arg-type]
            assert dict(db.items()) == expect
    with bitcask.open(tmp_path, sync="never", clock=wall) as db:
        db.merge()
        assert dict(db.items()) == expect
    bitcask.repair(tmp_path)
    with bitcask.open(tmp_path, sync="never", clock=wall, hint_files=False) as db:
        assert dict(db.items()) == expect
