"""Bad clocks never fail a write nor leave a record that cannot be read.

A system clock set before 1970 (a dead RTC battery on some boards, a bad NTP answer,
a test rig) made time.time_ns() negative, which the u64 timestamp field of a record
cannot hold: every write, put, batch, group, delete, read-modify-write, failed with
``struct.error: int too large to convert`` (a real bitcask-server answered
"-ERR int too large to convert" to every SET). A record's timestamp is now 0 for
such a clock (bitcask/_record.py ``timestamp_us``); nothing orders by it. An expiry
before 1970 cannot be stored either: a ttl that lands there is refused with a
ValueError naming the clock (Redis too answers "invalid expire time" to SET EX when
now + ttl <= 0), and nothing is written.

A clock after 2262 is out of reach: CPython's own time.time() raises OverflowError
there (its clock is int64 nanoseconds), so no Python program runs, this one included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bitcask
import bitcask._record as record_mod
import bitcask._writer as writer_mod
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, scan

BEFORE_1970 = -18_489_600.0  # 1969-06-01T00:00:00Z


@pytest.fixture
def old_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """The system clock at BEFORE_1970, as the engine reads it (both reads)."""
    ns = int(BEFORE_1970 * 1e9)
    monkeypatch.setattr(writer_mod, "_time_ns", lambda: ns)
    monkeypatch.setattr(record_mod, "_time_ns", lambda: ns)
    return BEFORE_1970


def _stamps(path: Path) -> list[int]:
    out = []
    for name in sorted(os.listdir(path)):
        if name.endswith(".data"):
            buf = (path / name).read_bytes()
            for rec in scan(buf, FILE_HEADER_SIZE, len(buf), ScanIssues()):
                out.append(rec[3])
    return out


EXPECT = {b"k": b"v", b"b1": b"1", b"g": b"x", b"n": b"6", b"s": b"set", b"moved": b"r"}


def test_every_write_works_with_a_clock_before_1970(tmp_path: Path, old_clock: float) -> None:
    with bitcask.open(tmp_path, sync="never", clock=lambda: old_clock) as db:
        db.put(b"k", b"v")
        db.write_batch([("put", b"b1", b"1"), ("put", b"b2", b"2"), ("delete", b"b2")])
        assert db.write_group([[("put", b"g", b"x")], [("put", b"gone", b"y")]]) == [[None], [None]]
        assert db.delete(b"gone")
        assert db.incr(b"n", 6) == 6
        assert db.set(b"s", b"set") == (True, None)
        db.put(b"r", b"r")
        assert db.rename(b"r", b"moved")
        with pytest.raises(ValueError, match="before 1970: the clock reads"):
            db.put(b"t", b"v", ttl=10)
        with pytest.raises(ValueError, match="before 1970"):
            db.write_batch([("put", b"t", b"v", 10), ("put", b"t2", b"v")])
        with pytest.raises(ValueError, match="before 1970"):
            db.set(b"t", b"v", ttl=10)
        assert dict(db.items()) == EXPECT  # the refused TTL writes left nothing
        db.merge()
        assert dict(db.items()) == EXPECT
        db.put(b"after", b"merge")
    expect = {**EXPECT, b"after": b"merge"}
    stamps = _stamps(tmp_path)
    assert stamps and set(stamps) == {0}  # every record, markers and tombstones too
    for opts in ({}, {"hint_files": False}, {"readonly": True}):
        with bitcask.open(tmp_path, sync="never", **opts) as db:  # type: ignore[arg-type]
            assert dict(db.items()) == expect
    report = bitcask.repair(tmp_path)
    assert not report.dropped and not report.truncated
    assert bitcask.check(tmp_path).ok
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == expect


def test_a_ttl_just_past_the_epoch_is_kept(tmp_path: Path) -> None:
    # A clock just before 1970 whose now + ttl is past it stores the expiry as is.
    now = [-5.0]
    with bitcask.open(tmp_path, sync="never", clock=lambda: now[0]) as db:
        db.put(b"t", b"v", ttl=10)
        assert db.expire_at_ms(b"t") == 5000 and db.get(b"t") == b"v"
        now[0] = 5.0
        assert db.get(b"t") is None


def test_the_clock_back_to_before_1970_between_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written at a sane time, then the clock falls before 1970: both kinds of records
    # load side by side, the later wins.
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"sane")
        db.put(b"t", b"ttl", ttl=3600)
        ns = int(BEFORE_1970 * 1e9)
        monkeypatch.setattr(writer_mod, "_time_ns", lambda: ns)
        monkeypatch.setattr(record_mod, "_time_ns", lambda: ns)
        db.put(b"k", b"old-clock")
    monkeypatch.undo()
    with bitcask.open(tmp_path, sync="never", hint_files=False) as db:
        assert (db.get(b"k"), db.get(b"t")) == (b"old-clock", b"ttl")
