"""Stores written by the first release's engine (commit e7711f8) open with today's.

The on-disk format is still version 1 (docs/format.md): issue 13's rework changed
how records are grouped, not how they are encoded. These fixtures prove it on bytes
the old code wrote: tests/bitcask/fixtures/v1-e7711f8 (make_fixture.py there says
how). Each store is opened from a copy, with its hints and with them removed (the
scan path), then checked, merged and reopened; every key answers the same each time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import bitcask

FIXTURES = Path(__file__).with_name("fixtures") / "v1-e7711f8"

# What fill() in make_fixture.py left: every key that was ever written, and its answer.
EXPECTED: dict[bytes, bytes | None] = {
    **{b"key:%03d" % i: b"again-%03d" % i for i in range(0, 40, 2)},
    **{b"key:%03d" % i: b"value-%03d" % i * 3 for i in range(1, 40, 2)},
    b"key:005": None,  # deleted before the merge
    b"key:006": None,  # deleted inside a write_batch
    b"key:007": None,  # deleted last
    b"k": b"v2",
    b"ttl-far": b"lives",
    b"ttl-gone": None,  # expired
    b"b1": b"x",
    b"b2": b"y",
    "unicode-ключ".encode(): "значение".encode(),
    b"empty": b"",
}
STORES = {
    "closed": {**EXPECTED, b"after-backup": b"1"},
    "backup": {**EXPECTED, b"after-backup": None},
    "killed": {**EXPECTED, b"after-backup": None},
}


def answers(db: bitcask.Bitcask, expected: dict[bytes, bytes | None]) -> None:
    assert {k: db.get(k) for k in expected} == expected
    live = sorted(k for k, v in expected.items() if v is not None)
    assert sorted(db.keys()) == live
    assert len(db) == len(live)
    ttl = db.ttl(b"ttl-far")
    assert ttl is not None and ttl > 1e9  # written as 2e9 s ahead, in 2026


@pytest.mark.parametrize("hints", [True, False], ids=["hints", "scan"])
@pytest.mark.parametrize("name", sorted(STORES))
def test_a_v1_store_opens_answers_merges_and_reopens(
    name: str, hints: bool, tmp_path: Path
) -> None:
    path = tmp_path / name
    shutil.copytree(FIXTURES / name, path)
    if not hints:
        for hint in path.glob("*.hint"):
            hint.unlink()
    expected = STORES[name]
    with bitcask.open(path) as db:
        recovery = db.stats()["recovery"]
        assert recovery["corrupt_records"] == 0 and recovery["dropped_batches"] == 0
        assert recovery["events"] == []
        answers(db, expected)
    report = bitcask.check(path)
    assert report.ok, report
    with bitcask.open(path) as db:
        db.merge()
        answers(db, expected)
        db.put(b"new", b"write")
    with bitcask.open(path) as db:
        answers(db, {**expected, b"new": b"write"})
    assert bitcask.check(path).ok
