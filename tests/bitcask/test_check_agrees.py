"""``bitcask check`` names exactly the hints the open distrusts, and repair fixes them.

For each kind of damage recovery handles, a small real store is damaged on disk, then
``check``'s verdict is compared with what a real open does: every hint check calls
untrusted ("open scans ...") is one the open scanned instead, and every other hint
was loaded. ``repair`` then leaves a store that checks OK and opens from its hints
with every value intact.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask._datafile import (
    FILE_HEADER_SIZE,
    ScanIssues,
    data_name,
    hint_name,
    list_data_files,
    map_file,
    scan,
)
from bitcask._hint import build_hint, write_hint

N = 60
# the module (bitcask.check is also the name of its function, exported by bitcask)
check_module = importlib.import_module("bitcask.check")


def _values() -> dict[bytes, bytes | None]:
    model: dict[bytes, bytes | None] = {b"key:%04d" % i: b"v%d-" % i + b"x" * 40 for i in range(N)}
    model[b"key:0003"] = b"new"
    model[b"key:0004"] = None
    return model


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "db"
    with bitcask.open(path, sync="never", max_file_size=2048) as db:
        for i in range(N):
            db.put(b"key:%04d" % i, b"v%d-" % i + b"x" * 40)
        db.put(b"key:0003", b"new")
        db.delete(b"key:0004")
    assert len(list_data_files(str(path))) >= 3
    return path


def _second(path: Path) -> int:
    return list_data_files(str(path))[1]


def _flip(file: Path, at: int) -> None:
    blob = bytearray(file.read_bytes())
    blob[at] ^= 0xFF
    file.write_bytes(bytes(blob))


def _rehint(path: Path, fid: int, *, size_delta: int = 0, past_end: bool = False) -> None:
    dpath = path / data_name(fid)
    mm = map_file(str(dpath))
    assert mm is not None
    size = len(mm)
    recs = list(scan(mm, FILE_HEADER_SIZE, size, ScanIssues()))
    del mm
    if past_end:  # the last entry moved to start 8 bytes before the end: it ends past it
        _off, rsize, *rest = recs[-1]
        recs[-1] = (size - 8, rsize, *rest)  # type: ignore[assignment]
    write_hint(str(path / hint_name(fid)), build_hint(fid, size + size_delta, recs))


def _damage(path: Path, kind: str) -> None:
    fid = _second(path)
    data, hint = path / data_name(fid), path / hint_name(fid)
    if kind == "torn tail":
        last = path / data_name(list_data_files(str(path))[-1])
        os.truncate(last, last.stat().st_size - 5)
    elif kind == "bad CRC":
        _flip(data, FILE_HEADER_SIZE + 40)
    elif kind == "bad header":
        _flip(data, 1)
    elif kind == "hint CRC":
        _flip(hint, hint.stat().st_size - 1)
    elif kind == "hint size mismatch":
        _rehint(path, fid, size_delta=7)
    elif kind == "hint entry past the end":
        _rehint(path, fid, past_end=True)
    elif kind == "hint past the end, bad CRC":
        _rehint(path, fid, past_end=True)
        _flip(data, FILE_HEADER_SIZE + 40)
    elif kind == "missing hint":
        hint.unlink()
    elif kind == "orphan merge dir":
        (path / "merge").mkdir()
    elif kind == "leftover .repair":
        shutil.copy(data, path / (data_name(fid) + ".repair"))
    else:
        raise AssertionError(kind)


KINDS = [
    "torn tail",
    "bad CRC",
    "bad header",
    "hint CRC",
    "hint size mismatch",
    "hint entry past the end",
    "hint past the end, bad CRC",
    "missing hint",
    "orphan merge dir",
    "leftover .repair",
]


@pytest.mark.parametrize("kind", KINDS)
def test_check_names_what_the_open_distrusts_and_repair_fixes_it(
    pristine: Path, tmp_path: Path, kind: str
) -> None:
    path = shutil.copytree(pristine, tmp_path / "db")
    mm = map_file(str(path / data_name(_second(path))))
    first = next(scan(mm, FILE_HEADER_SIZE, len(mm), ScanIssues()))[5]  # type: ignore[arg-type]
    del mm
    _damage(path, kind)
    report = bitcask.check(path)
    untrusted = [p for p in report.bad_hints if "open scans" in p.reason]
    with bitcask.open(path, readonly=True) as db:
        scanned = db.recovery.scanned_files
        hinted = db.recovery.hinted_files
    files = len(list_data_files(str(path)))
    assert scanned == len(untrusted) + len(report.missing_hints), (kind, str(report))
    assert hinted == files - scanned
    if kind.startswith("hint") or kind == "torn tail":
        assert not report.ok and untrusted, str(report)
    if "past the end" in kind:
        (p,) = untrusted
        assert p.file == hint_name(_second(path))
        assert "entry of key b'key:0049'" in p.reason and "ends past" in p.reason
    fixed = bitcask.repair(path)
    if untrusted:
        assert {p.file for p in untrusted} <= set(fixed.hints_rebuilt)
    after = bitcask.check(path)
    assert after.ok and not after.missing_hints, str(after)
    with bitcask.open(path, readonly=True) as db:
        assert db.recovery.scanned_files == 0
        got = {k: db.get(k) for k in _values()}
    want = _values()
    if kind == "torn tail":  # the delete of key:0004 was the record torn off
        want[b"key:0004"] = b"v4-" + b"x" * 40
    if kind.endswith("bad CRC"):  # repair deletes the key of the damaged record
        want[first] = None
    assert got == want
    assert not bitcask.repair(path).changed  # a rerun finds nothing more


def test_check_beside_a_writer_that_seals_the_file_it_is_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # check may run beside a running server (docs/operations.md). It mapped the
    # active file (preallocated, 65,536 bytes); the writer sealed it while it was
    # scanned (cut to 6,206 bytes, hint written); the hint was then judged against
    # the old mapping: "hint covers 6206 bytes, data file has 65536", exit 1 on a
    # healthy store. A file whose size moved while it was read is read again.
    db = bitcask.open(tmp_path, sync="never")
    for i in range(100):
        db.put(b"k%d" % i, b"v" * 30)
    real_scan = check_module.scan
    sealed: list[int] = []

    def scan_then_seal(*args: Any) -> Any:
        recs = list(real_scan(*args))
        if not sealed:
            sealed.append(1)
            db.close()  # the writer seals the file meanwhile (a rotation, a stop)
        return iter(recs)

    monkeypatch.setattr(check_module, "scan", scan_then_seal)
    report = bitcask.check(tmp_path)
    assert sealed and report.ok and not report.missing_hints, str(report)
    assert report.records == 100


def test_a_crashed_writers_torn_tail_is_counted_as_recovery_counts_it(tmp_path: Path) -> None:
    # A writer killed mid-append leaves its preallocated file: records, a record
    # half copied, then unwritten zero bytes (not damage: docs/format.md). check
    # reported the half record as 64,910 bytes (to the end of the preallocation)
    # where the open counts 13, and repair quarantined the zeros with it.
    db = bitcask.open(tmp_path, sync="never")
    for i in range(10):
        db.put(b"k%d" % i, b"v" * 30)
    end = db.writer._files.offset
    db._abandon()  # as if the process died
    data = tmp_path / data_name(1)
    with open(data, "r+b") as f:
        f.seek(end)
        f.write(b"\x5a" * 13)  # the first bytes of a record being copied
    report = bitcask.check(tmp_path)
    (problem,) = report.problems
    with bitcask.open(tmp_path, readonly=True) as ro:
        assert ro.recovery.skipped_bytes == 13
    assert (problem.file, problem.offset, problem.bytes) == (data.name, end, 13)
    fixed = bitcask.repair(tmp_path)
    assert [(p.offset, p.bytes) for p in fixed.truncated] == [(end, 13)]
    (copy,) = fixed.quarantined
    assert (tmp_path / copy).read_bytes() == b"\x5a" * 13
    assert bitcask.check(tmp_path).ok
    with bitcask.open(tmp_path, readonly=True) as ro:
        assert len(ro) == 10
