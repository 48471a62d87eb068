"""A torn tail of the last data file: a writer open cuts it, and keeps a copy.

Strategy: real stores, the last file given a tail no valid record follows (garbage
appended, a record cut short, zeros appended, or a crashed writer's flagged file
whose append never completed, with zeros or valid records after the hole). A writer
open truncates the tail (``truncated_bytes``) and, unless the tail is all zero
bytes, first copies it to ``quarantine/`` the way repair does (same ``.bad`` +
``.json`` pair), naming the copy in the recovery event. Every key's answer is
asserted after the open and after two reopens, and a reopen cuts nothing more and
writes no second copy. Before, the bytes were cut with no copy kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bitcask
from bitcask._datafile import OPEN_FILE, data_name, encode_file_header, list_data_files
from tests.bitcask._damage import records
from tests.bitcask.test_damage_scope import Answers, answer

KEYS = [b"k%02d" % i for i in range(30)]


def build(path: Path) -> tuple[Path, Answers]:
    with bitcask.open(path, sync="never") as db:
        for k in KEYS:
            db.put(k, b"value of " + k)
    return path / data_name(list_data_files(str(path))[-1]), {k: b"value of " + k for k in KEYS}


def opened(path: Path, want: Answers) -> bitcask.RecoveryReport:
    with bitcask.open(path, sync="never") as db:
        assert {k: answer(db, k) for k in want} == want
        return db.recovery


def quarantined(path: Path) -> dict[str, bytes]:
    q = path / "quarantine"
    return {n: (q / n).read_bytes() for n in sorted(os.listdir(q))} if q.is_dir() else {}


def assert_kept(path: Path, rep: bitcask.RecoveryReport, offset: int, tail: bytes) -> None:
    """The tail was cut, and its bytes are in quarantine/ with their index."""
    assert rep.truncated_bytes == len(tail), str(rep)
    (event,) = [e for e in rep.events if "truncated" in e]
    assert f"offset {offset}, {len(tail)} bytes truncated, kept in quarantine/" in event
    files = quarantined(path)
    (bad,) = [n for n in files if n.endswith(".bad")]
    assert event.endswith(bad)
    assert files[bad] == tail
    (entry,) = json.loads(files[bad[: -len(".bad")] + ".json"])
    assert (entry["offset"], entry["bytes"], entry["at"]) == (offset, len(tail), 0)
    assert "torn tail truncated by a writer open" in entry["reason"]


def assert_reopens_clean(path: Path, want: Answers) -> None:
    before = quarantined(path)
    for _ in range(2):
        rep = opened(path, want)
        assert rep.truncated_bytes == 0 and rep.skipped_bytes == 0, str(rep)
    assert quarantined(path) == before
    assert bitcask.check(path).ok


def test_garbage_tail_is_kept_in_quarantine(tmp_path: Path) -> None:
    dpath, want = build(tmp_path)
    size = dpath.stat().st_size
    tail = bytes(range(1, 256)) * 2
    with open(dpath, "ab") as f:
        f.write(tail)
    assert_kept(tmp_path, opened(tmp_path, want), size, tail)
    assert_reopens_clean(tmp_path, want)


def test_record_cut_short_is_kept_in_quarantine(tmp_path: Path) -> None:
    dpath, want = build(tmp_path)
    last = records(dpath)[-1]
    blob = dpath.read_bytes()
    os.truncate(dpath, len(blob) - 5)
    want[last.key] = None  # its only record is torn
    assert_kept(tmp_path, opened(tmp_path, want), last.offset, blob[last.offset : -5])
    assert_reopens_clean(tmp_path, want)


def test_zero_tail_is_cut_without_a_copy(tmp_path: Path) -> None:
    dpath, want = build(tmp_path)
    with open(dpath, "ab") as f:
        f.write(bytes(300))
    rep = opened(tmp_path, want)
    assert rep.truncated_bytes == 300 and "kept in" not in str(rep), str(rep)
    assert not (tmp_path / "quarantine").exists()
    assert_reopens_clean(tmp_path, want)


def crashed_file(dpath: Path, hole_at: int, after: bytes) -> None:
    """Make ``dpath`` what a crashed writer leaves: flagged OPEN_FILE, an append whose
    CRC was never stored at ``hole_at`` (its bytes and ``after`` kept), then the
    preallocated zero tail."""
    fid = int(dpath.name[:10])
    blob = bytearray(dpath.read_bytes())
    blob[:16] = encode_file_header(fid, OPEN_FILE)
    blob[hole_at : hole_at + 4] = bytes(4)
    dpath.write_bytes(bytes(blob) + after + bytes(64 << 10))


def test_crashed_append_is_kept_in_quarantine(tmp_path: Path) -> None:
    """The zero tail of the flagged file is no data (not counted, not copied); the
    append that never completed is the torn tail, copied."""
    dpath, want = build(tmp_path)
    last = records(dpath)[-1]
    blob = dpath.read_bytes()
    crashed_file(dpath, last.offset, b"")
    want[last.key] = None
    torn = bytes(4) + blob[last.offset + 4 :]
    assert_kept(tmp_path, opened(tmp_path, want), last.offset, torn)
    assert_reopens_clean(tmp_path, want)


def test_zeroed_crc_mid_file_keeps_the_records_after_it(tmp_path: Path) -> None:
    """A zero CRC field in a crashed writer's file reads as an append that never
    completed: everything after it is cut (it may be the rest of that append), and
    the valid records after it are kept in quarantine/, not lost without a copy."""
    dpath, want = build(tmp_path)
    recs = records(dpath)
    hole = recs[10]
    blob = dpath.read_bytes()
    crashed_file(dpath, hole.offset, b"")
    for r in recs[10:]:
        want[r.key] = None
    torn = bytes(4) + blob[hole.offset + 4 :]
    assert_kept(tmp_path, opened(tmp_path, want), hole.offset, torn)
    assert_reopens_clean(tmp_path, want)
