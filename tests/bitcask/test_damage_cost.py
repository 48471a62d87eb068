"""Many damaged records: each costs a bounded number of probes, and every answer holds.

Strategy: a real store, then one byte flipped in every other record (a value byte,
or a length byte), or a zeroed range. The cost is asserted as a count, never a
time: the scanner's probe for "a valid record starts here" (``_framing.valid_at``, which
computes a CRC) is wrapped in a counter while a readonly open scans the files
without hints. Before the fix a damaged record cost ~960 probes (its one-byte
length search ran first: 8 bytes x 255 values), 1.8 ms each; a zeroed range cost
one probe per byte. The answers are then walked through open, merge, reopen,
repair and reopen, with hints kept and removed (``walk`` of test_damage_scope):
a damaged record's key answers CorruptRecordError until repair turns it into a
tombstone, every other key its latest value, a deleted key stays deleted.
"""

from __future__ import annotations

import mmap
import random
import zlib
from pathlib import Path

import pytest

import bitcask
from bitcask import _framing
from bitcask._datafile import data_name, list_data_files
from bitcask._record import HEADER_SIZE
from bitcask._syndrome import range_crc
from tests.bitcask._damage import flip, records
from tests.bitcask.test_damage_scope import CORRUPT, Answers, answers, drop_hints, walk

N_KEYS = 240
# Where in a record the flipped byte lies: a value byte, the low byte of key_len
# or of val_len (mended by the one-byte length correction: that record only).
SPOTS = {"value": -7, "key_len": HEADER_SIZE - 5, "value_len": HEADER_SIZE - 1}
# Probes a damaged record may cost: the next record's check, a resync to it, the
# candidate ends of a length search whose byte 21 is zero. Measured: 1 (value),
# at most 4.5 (a length byte); before the fix ~960.
PROBES_PER_RECORD = 8


def build(path: Path) -> tuple[list[bytes], Answers]:
    """Every key written twice (an older value a damaged key must never fall back
    to), a few deleted, filler for the merge to reclaim; several sealed files."""
    keys = [b"key:%04d" % i for i in range(N_KEYS)]
    with bitcask.open(path, sync="never", max_file_size=16 << 10) as db:
        for k in keys:
            db.put(k, b"old " + k)
        for i, k in enumerate(keys):
            db.put(k, b"new " + k + bytes([i % 251]) * 40)
        for k in keys[::40]:
            assert db.delete(k)
        for i in range(30):
            db.put(b"filler", b"%d" % i * 30)
    want: Answers = {k: b"new " + k + bytes([i % 251]) * 40 for i, k in enumerate(keys)}
    want.update({k: None for k in keys[::40]})
    return keys, want


def damage_every_other(path: Path, spot: str) -> set[bytes]:
    """Flip one byte of every other latest value record; the keys hit."""
    hit: set[bytes] = set()
    n = 0
    for fid in list_data_files(str(path)):
        dpath = path / data_name(fid)
        for rec in records(dpath):
            if not rec.value.startswith(b"new "):
                continue
            n += 1
            if n % 2:
                at = rec.size + SPOTS[spot] if SPOTS[spot] < 0 else SPOTS[spot]
                flip(dpath, rec.offset + at)
                hit.add(rec.key)
    return hit


def count_probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    probe = _framing.valid_at

    def counting(buf: bytes, pos: int, end: int) -> bool:
        calls[0] += 1
        return probe(buf, pos, end)

    monkeypatch.setattr(_framing, "valid_at", counting)
    return calls


@pytest.mark.parametrize("spot", sorted(SPOTS))
def test_damaged_records_cost_a_few_probes_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spot: str
) -> None:
    keys, want = build(tmp_path)
    hit = damage_every_other(tmp_path, spot)
    assert len(hit) >= N_KEYS // 2 - 10
    drop_hints(tmp_path)  # the scan is the only witness
    calls = count_probes(monkeypatch)
    with bitcask.open(tmp_path, readonly=True) as db:
        assert db.recovery.corrupt_records == len(hit), str(db.recovery)
        assert db.recovery.skipped_bytes == sum(
            n for line in db.recovery.events for n in [int(line.split(", ")[1].split()[0])]
        )
    assert calls[0] <= PROBES_PER_RECORD * len(hit), f"{calls[0]} probes for {len(hit)} records"
    report = bitcask.check(tmp_path)
    assert len(report.problems) == len(hit), str(report)
    monkeypatch.undo()
    want.update({k: CORRUPT for k in hit if want[k] is not None})  # a later delete holds
    assert answers(tmp_path, keys) == want


@pytest.mark.parametrize("hint", ["kept", "removed"])
@pytest.mark.parametrize("spot", ["value", "value_len"])
def test_many_damaged_records_answer_at_every_step(tmp_path: Path, hint: str, spot: str) -> None:
    keys, want = build(tmp_path)
    hit = damage_every_other(tmp_path, spot)
    if hint == "removed":
        drop_hints(tmp_path)
    after_repair = {k: (None if k in hit else v) for k, v in want.items()}
    want.update({k: CORRUPT for k in hit if want[k] is not None})  # a later delete holds
    walk(tmp_path, keys, want, after_repair)


def test_zeroed_range_costs_a_few_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zeroed range of ~100 KiB inside a file (no hint): its records are lost (their
    keys, written once, are absent), the report names the range, every record after
    it loads; the resync skips the zeros instead of probing each offset."""
    keys = [b"z:%05d" % i for i in range(1500)]
    with bitcask.open(tmp_path, sync="never", max_file_size=1 << 30) as db:
        for k in keys:
            db.put(k, k * 10)
    (fid,) = list_data_files(str(tmp_path))
    dpath = tmp_path / data_name(fid)
    recs = records(dpath)
    first, last = recs[100], recs[len(recs) - 100]
    start, stop = first.offset + 3, last.offset - 5  # from inside one record to inside another
    with open(dpath, "r+b") as f:
        f.seek(start)
        f.write(bytes(stop - start))
    lost = {r.key for r in recs if r.offset + r.size > start and r.offset < stop}
    drop_hints(tmp_path)
    calls = count_probes(monkeypatch)
    with bitcask.open(tmp_path, readonly=True) as db:
        events = "\n".join(db.recovery.events)
    assert calls[0] <= 100, f"{calls[0]} probes for a {stop - start}-byte zeroed range"
    resume = min(r.offset for r in recs if r.offset >= stop)
    assert f"offset {first.offset}, {resume - first.offset} bytes: unreadable bytes" in events
    monkeypatch.undo()
    assert answers(tmp_path, keys) == {k: (None if k in lost else k * 10) for k in keys}


def test_range_crc_of_a_mapped_file_equals_crc32(tmp_path: Path) -> None:
    """The resync's CRC of a long claimed range (prefix registers and a jump, so a
    probe costs the same whatever length it claims) is zlib's crc32, on two files
    in turn (the registers of one never serve the other)."""
    rng = random.Random(7)
    blobs = [rng.randbytes(300_000), bytes(200_000) + rng.randbytes(100_000)]
    maps = []
    for i, blob in enumerate(blobs):
        (tmp_path / f"f{i}").write_bytes(blob)
        with open(tmp_path / f"f{i}", "rb") as f:
            maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    for _ in range(200):
        i = rng.randrange(2)
        a = rng.randrange(len(blobs[i]))
        b = rng.randrange(a, len(blobs[i]) + 1)
        assert range_crc(maps[i], a, b) == zlib.crc32(blobs[i][a:b]), (i, a, b)
    for m in maps:
        m.close()
