"""Data files on disk: rotation, hint files, torn tails, CRC mismatches, check/repair."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask import CorruptRecordError

HEADER = 29
FILE_HEADER = 16


def data_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.data"))


def fill(path: Path, n: int = 100, **opts: Any) -> dict[bytes, bytes]:
    want = {b"key:%04d" % i: b"value-%04d" % i * 3 for i in range(n)}
    with bitcask.open(path, sync="never", **opts) as db:
        for k, v in want.items():
            db.put(k, v)
    return want


def contents(db: bitcask.Bitcask) -> dict[bytes, bytes]:
    return dict(db.items())


def test_file_header_and_record_layout(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"key", b"value")
    raw = data_files(tmp_path)[0].read_bytes()
    magic, version, _res, fid = struct.unpack(">4sHHI", raw[:12])
    assert (magic, version, fid) == (b"BCDF", 1, 1)
    crc, flags, _ts, exp, kl, vl = struct.unpack(">IBQQII", raw[16:45])
    assert (flags, exp, kl, vl) == (0, 0, 3, 5)
    assert raw[45:53] == b"keyvalue"
    import zlib

    assert crc == zlib.crc32(raw[20:53])


def test_rotation_at_max_file_size(tmp_path: Path) -> None:
    want = fill(tmp_path, 200, max_file_size=2048)
    files = data_files(tmp_path)
    assert len(files) > 5
    record = HEADER + 8 + 30
    for f in files[:-1]:
        assert f.stat().st_size <= 2048
        assert f.stat().st_size > 2048 - record
    with bitcask.open(tmp_path, sync="never", max_file_size=2048) as db:
        assert contents(db) == want
        assert len(db.stats()["files"]) == len(files) + 1  # plus a fresh active file


def test_a_batch_is_never_split_across_files(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        db.put(b"first", b"x" * 500)
        ops = [("put", b"b%02d" % i, b"y" * 100, None) for i in range(20)]
        db.write_batch(ops)
        stats = db.stats()
    sizes = [f["size"] for f in stats["files"]]
    assert max(sizes) > 1024  # the batch overflowed its file rather than split


def test_hints_are_written_and_used(tmp_path: Path) -> None:
    want = fill(tmp_path, 300, max_file_size=4096)
    hints = sorted(tmp_path.glob("*.hint"))
    assert len(hints) == len(data_files(tmp_path))
    with bitcask.open(tmp_path, sync="never", max_file_size=4096) as db:
        rec = db.recovery
        assert rec.scanned_files == 0 and rec.hinted_files == len(hints)
        assert contents(db) == want


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("missing", id="missing"),
        pytest.param("flip", id="flipped-byte"),
        pytest.param("truncate", id="truncated"),
        pytest.param("stale", id="stale-size"),
    ],
)
def test_bad_or_missing_hint_falls_back_to_scanning(tmp_path: Path, damage: str) -> None:
    want = fill(tmp_path, 100, max_file_size=2048)
    hint = sorted(tmp_path.glob("*.hint"))[1]
    if damage == "missing":
        hint.unlink()
    elif damage == "flip":
        raw = bytearray(hint.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        hint.write_bytes(bytes(raw))
    elif damage == "truncate":
        hint.write_bytes(hint.read_bytes()[:-9])
    else:
        data = hint.with_suffix(".data")
        with open(data, "ab") as f:
            f.write(b"")  # same size: rewrite the hint of another file instead
        other = sorted(tmp_path.glob("*.hint"))[2]
        hint.write_bytes(other.read_bytes())
    report = bitcask.check(tmp_path)
    if damage == "missing":
        assert hint.name in report.missing_hints
    else:
        assert [p.file for p in report.bad_hints] == [hint.name]
    with bitcask.open(tmp_path, sync="never", max_file_size=2048) as db:
        assert db.recovery.scanned_files == 1
        assert contents(db) == want
        db.sync()
    # the rebuilt hint is in place after the store closes
    assert bitcask.check(tmp_path).ok


def test_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    want = fill(tmp_path, 10)
    last = data_files(tmp_path)[-1]
    size = last.stat().st_size
    last.with_suffix(".hint").unlink()
    with open(last, "r+b") as f:
        f.truncate(size - 7)  # cut into the last record
    report = bitcask.check(tmp_path)
    assert not report.ok and report.problems[0].file == last.name
    with bitcask.open(tmp_path, sync="never") as db:
        rec = db.recovery
        record = HEADER + 8 + 30
        assert rec.truncated_bytes == record - 7
        assert any("truncated" in e for e in rec.events)
        assert db.stats()["recovery"]["truncated_bytes"] == record - 7
        want.pop(b"key:0009")
        assert contents(db) == want
    assert last.stat().st_size == size - record


def test_readonly_open_ignores_a_torn_tail_without_truncating(tmp_path: Path) -> None:
    fill(tmp_path, 10)
    last = data_files(tmp_path)[-1]
    last.with_suffix(".hint").unlink()
    with open(last, "ab") as f:
        f.write(b"\x00garbage")
    size = last.stat().st_size
    db = bitcask.open(tmp_path, readonly=True)
    try:
        assert db.recovery.truncated_bytes == 0 and db.recovery.skipped_bytes == 8
        assert len(db) == 10
    finally:
        db.close()
    assert last.stat().st_size == size


def test_crc_mismatch_is_reported_and_never_served(tmp_path: Path) -> None:
    want = fill(tmp_path, 20)
    data = data_files(tmp_path)[0]
    data.with_suffix(".hint").unlink()
    raw = bytearray(data.read_bytes())
    record = HEADER + 8 + 30
    off = FILE_HEADER + 5 * record  # key:0005
    raw[off + HEADER + 10] ^= 0x01  # a value byte
    data.write_bytes(bytes(raw))
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.corrupt_records == 1
        with pytest.raises(CorruptRecordError):
            db.get(b"key:0005")  # refused, never absent or older
        want.pop(b"key:0005")
        assert {k: db.get(k) for k in want} == want
    report = bitcask.check(tmp_path)
    assert [(p.file, p.offset, p.bytes) for p in report.problems] == [(data.name, off, record)]


def test_corruption_after_open_raises_on_get(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"a", b"x" * 50)
        db.put(b"b", b"y" * 50)
        db.put(b"c", b"z" * 50)
        data = data_files(tmp_path)[0]
        db.sync()
        with open(data, "r+b") as f:  # the store maps the file: it sees the flip
            f.seek(FILE_HEADER + (HEADER + 51) + HEADER + 20)
            f.write(b"Y")
        with pytest.raises(CorruptRecordError):
            db.get(b"b")
        assert db.get(b"a") == b"x" * 50


def test_stored_key_must_match_the_requested_key(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"aa", b"1")
        db.put(b"bb", b"2")
        db._kmap[b"aa"] = db._kmap[b"bb"]  # simulate a keydir pointing at the wrong record
        with pytest.raises(CorruptRecordError):
            db.get(b"aa")


def test_repair_truncates_drops_and_rebuilds(tmp_path: Path) -> None:
    want = fill(tmp_path, 30, max_file_size=1024)
    files = data_files(tmp_path)
    record = HEADER + 8 + 30
    # corrupt one record in the first file, remove a hint, tear the last file
    first = files[0]
    raw = bytearray(first.read_bytes())
    raw[FILE_HEADER + record + 3] ^= 0x40
    first.write_bytes(bytes(raw))
    files[1].with_suffix(".hint").unlink()
    last = files[-1]
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size - 3)
    before = bitcask.check(tmp_path)
    assert not before.ok
    report = bitcask.repair(tmp_path)
    assert [(p.file, p.offset, p.bytes) for p in report.dropped] == [
        (first.name, FILE_HEADER + record, record)
    ]
    assert [(p.file, p.bytes) for p in report.truncated] == [(last.name, record - 3)]
    assert files[1].with_suffix(".hint").name in report.hints_rebuilt
    assert report.changed and "dropped" in str(report)
    assert report.to_dict()["dropped"][0]["file"] == first.name
    after = bitcask.check(tmp_path)
    assert after.ok and not after.missing_hints, str(after)
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        assert db.recovery.scanned_files == 0
        got = contents(db)
    lost = set(want) - set(got)
    assert len(lost) == 2 and all(got[k] == want[k] for k in got)


def test_check_report_shapes(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    report = bitcask.check(tmp_path)
    assert report.ok and report.records == 5 and report.files == 1
    d = report.to_dict()
    assert d["ok"] is True and d["problems"] == []
    assert "OK" in str(report)
    with pytest.raises(FileNotFoundError):
        bitcask.check(tmp_path / "nope")


def test_check_never_modifies(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    last = data_files(tmp_path)[-1]
    with open(last, "ab") as f:
        f.write(b"junk")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert not bitcask.check(tmp_path).ok
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_empty_last_file_from_a_crash_at_creation(tmp_path: Path) -> None:
    want = fill(tmp_path, 5)
    (tmp_path / "0000000009.data").write_bytes(b"")
    with bitcask.open(tmp_path, sync="never") as db:
        assert contents(db) == want
    assert not (tmp_path / "0000000009.data").exists()
    assert os.listdir(tmp_path)


def test_damaged_length_resynchronises_at_the_next_valid_record(tmp_path: Path) -> None:
    want = fill(tmp_path, 20)
    data = data_files(tmp_path)[0]
    data.with_suffix(".hint").unlink()
    raw = bytearray(data.read_bytes())
    record = HEADER + 8 + 30
    off = FILE_HEADER + 5 * record
    raw[off + 24] ^= 0xFF  # key_len low byte: the record's extent is now wrong
    raw[off + 28] ^= 0xFF  # and value_len's: two bad bytes, no one-byte mend (format.md)
    data.write_bytes(bytes(raw))
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.corrupt_records == 1
        want.pop(b"key:0005")
        assert contents(db) == want  # every record after the damage still loads
    report = bitcask.repair(tmp_path)
    assert [(p.offset, p.bytes) for p in report.dropped] == [(off, record)]
    assert bitcask.check(tmp_path).ok


def test_damaged_file_header_costs_only_the_header(tmp_path: Path) -> None:
    want = fill(tmp_path, 40, max_file_size=1024)
    first = data_files(tmp_path)[0]
    first.with_suffix(".hint").unlink()
    raw = bytearray(first.read_bytes())
    raw[1] ^= 0xFF  # magic
    first.write_bytes(bytes(raw))
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        assert contents(db) == want
        assert any("bad magic" in e for e in db.recovery.events)
    assert not bitcask.check(tmp_path).ok
    bitcask.repair(tmp_path)
    assert bitcask.check(tmp_path).ok


def test_a_file_of_another_format_version_is_neither_loaded_nor_merged(tmp_path: Path) -> None:
    import zlib

    fill(tmp_path, 40, max_file_size=1024)
    first = data_files(tmp_path)[0]
    first.with_suffix(".hint").unlink()
    raw = bytearray(first.read_bytes())
    raw[4:6] = b"\x00\x02"  # version 2, with a valid header CRC
    raw[12:16] = struct.pack(">I", zlib.crc32(bytes(raw[:12])))
    first.write_bytes(bytes(raw))
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        assert any("unsupported format version 2" in e for e in db.recovery.events)
        assert db.get(b"key:0000") is None
        report = db.merge()
        assert int(first.name[:10]) not in report.inputs
    assert first.exists()
    repaired = bitcask.repair(tmp_path)
    assert [p.file for p in repaired.untouched] == [first.name]
    assert first.read_bytes()[4:6] == b"\x00\x02"


def test_a_disk_probe_file_left_by_a_kill_is_removed_at_the_next_writer_open(
    tmp_path: Path,
) -> None:
    """A SIGKILL during a disk probe (bitcask/_health.py) leaves .probe-<pid>.tmp, 64
    KiB a time; the next writer open removes it, a readonly open leaves it, and the
    store's keys are untouched either way."""
    path = tmp_path / "db"
    with bitcask.open(path) as db:
        db.put(b"k", b"v")
    left = path / ".probe-4242.tmp"
    left.write_bytes(bytes(64 * 1024))
    other = path / "notes.tmp"  # not ours: kept
    other.write_bytes(b"x")
    with bitcask.open(path, readonly=True) as db:
        assert db.get(b"k") == b"v"
    assert left.exists()
    with bitcask.open(path) as db:
        assert db.get(b"k") == b"v"
        assert sorted(db) == [b"k"]
    assert not left.exists()
    assert other.read_bytes() == b"x"
