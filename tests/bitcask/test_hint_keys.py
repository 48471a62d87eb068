"""A hint's keys come back exactly as written, whatever their lengths.

Strategy: the open splits a hint's concatenated keys with struct, 1,024 keys per
call (bitcask/_hint.py ``_Reader.keys``): one path for keys all of one length, one
for mixed lengths (the format built from the lengths). Both are checked against
the keys written, at counts around the 1,024 boundary, with the empty key and with
a key of 64 KiB, as hint entries and as tombstones; then through a real store of
several files, where the open from the hints must answer every key (value and TTL)
exactly as an open that scans the data files, and as the writes said.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import bitcask
from bitcask._datafile import Rec
from bitcask._hint import build_hint, decode_hint
from bitcask._record import TOMBSTONE

FIXED = [b"key:%012d" % i for i in range(3_000)]
MIXED = [b"k%d" % (i * 7919 % 100_003) for i in range(3_000)]  # 2 to 6 bytes


def shapes() -> dict[str, list[bytes]]:
    return {
        "fixed, one chunk": FIXED[:1_024],
        "fixed, chunks and a remainder": FIXED[:2_049],
        "fixed, under one chunk": FIXED[:5],
        "one key": FIXED[:1],
        "none": [],
        "mixed, chunks and a remainder": MIXED[:2_049],
        "mixed with the empty key": [*MIXED[:700], b"", *MIXED[700:1_030], b"x" * 65_536],
        "only the empty key": [b""],
    }


@pytest.mark.parametrize("name", list(shapes()))
def test_hint_keys_round_trip(name: str) -> None:
    keys = shapes()[name]
    dead = [b"dead:" + k for k in keys[::3]]  # tombstones: another length mix
    recs: list[Rec] = []
    off = 16
    for key in keys:
        recs.append((off, 40 + len(key), 0, 7, 0, key, 0))
        off += 40 + len(key)
    for key in dead:
        recs.append((off, 30 + len(key), TOMBSTONE, 7, 0, key, 3))
        off += 30 + len(key)
    hint = decode_hint(build_hint(9, off, recs), 9)
    assert hint.keys == keys
    assert [type(k) for k in hint.keys] == [bytes] * len(keys)
    assert list(hint.locs) == [(r[0] << 32) | r[1] for r in recs[: len(keys)]]
    assert hint.tomb_keys == dead
    assert list(hint.tomb_files) == [3] * len(dead)


def test_open_from_hints_answers_as_a_scan(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    rng = random.Random(14)
    keys = [b"", *FIXED[:1_500], *MIXED[:1_500]]
    model: dict[bytes, tuple[bytes, float | None]] = {}
    opts = {"sync": "never", "max_file_size": 64 << 10, "clock": lambda: now[0]}
    with bitcask.open(tmp_path, **opts) as db:
        for i, key in enumerate(keys):
            ttl = 600.0 if i % 5 == 0 else None
            value = b"v%d" % rng.randrange(1 << 30)
            db.put(key, value, ttl=ttl)
            model[key] = (value, ttl)
        for key in keys[::7]:  # deletes in later files than the puts
            db.delete(key)
            del model[key]
        for key in keys[1::11]:  # overwrites, some back without a TTL
            db.put(key, b"again")
            model[key] = (b"again", None)

    def answers(db: bitcask.Bitcask) -> dict[bytes, tuple[bytes | None, float | None]]:
        return {k: (db.get(k), db.ttl(k) if k in db else None) for k in keys}

    with bitcask.open(tmp_path, **opts) as db:
        hinted = answers(db)
        report = db.recovery
        assert len(db) == len(model)
    assert report.hinted_files >= 3 and report.scanned_files <= 1, report
    for hint in tmp_path.glob("*.hint"):
        hint.unlink()
    with bitcask.open(tmp_path, **opts) as db:
        scanned = answers(db)
        assert db.recovery.hinted_files == 0
    want = {k: model.get(k, (None, None)) for k in keys}
    assert hinted == scanned == want
