"""The active file's hint journal stays bounded by its keys, not by its overwrites.

A working set of overwritten keys larger than one compaction window (64 KiB of
appends) kept one journal entry per overwrite until the file was sealed (about 120
bytes each: 1,000,000 overwrites of 20,000 keys held 995,453 entries, +60 MB). The
journal now looks at a sample of itself as it grows and compacts itself whole when
at least half of it is superseded (bitcask/_hint.py, HintJournal). The figures come
from a one-off measurement (reported with the commit); here a smaller
working set with the first look lowered shows the bound, and the hint the journal
builds still equals, byte for byte, the one a scan of the file builds.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import bitcask
from bitcask import _hint
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, data_name, hint_name, map_file, scan
from bitcask._hint import HintJournal, build_hint
from tests.bitcask._journal_stream import compacted_and_plain

KEYS = 3000  # a working set larger than a 64 KiB window of these records (~500)


def _scanned_hint(path: Path, fid: int) -> bytes:
    data = path / data_name(fid)
    mm = map_file(str(data))
    assert mm is not None
    return build_hint(fid, len(mm), scan(mm, FILE_HEADER_SIZE, len(mm), ScanIssues()))


def test_overwrites_of_a_large_working_set_keep_the_journal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hint, "_FIRST_LOOK", 2048)
    rng = random.Random(5)
    keys = [b"key:%08d" % i for i in range(KEYS)]
    value = b"v" * 80
    peak = 0
    with bitcask.open(tmp_path, sync="never") as db:
        journal = db.writer._files.journal
        assert journal is not None
        for step in range(40_000):
            key = keys[rng.randrange(KEYS)]
            roll = rng.random()
            if roll < 0.02:
                db.delete(key)
            elif roll < 0.05:
                db.put(key, value, ttl=3600)
            elif roll < 0.06:
                db.write_batch([("put", key, b"b"), ("delete", keys[rng.randrange(KEYS)])])
            else:
                db.put(key, value)
            if step % 1000 == 999:
                peak = max(peak, len(journal.keys))
        assert db.stats()["files"][-1]["id"] == 1, "one file: the journal saw every write"
        want = dict(db.items())
    # 40,000 writes of 3,000 keys: about four entries a key plus one window at most
    # (it held one per write: ~40,000).
    assert peak < 4 * KEYS + 1500, peak
    assert (tmp_path / hint_name(1)).read_bytes() == _scanned_hint(tmp_path, 1)
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.recovery.hinted_files == 1
        assert dict(db.items()) == want


def test_a_journal_the_keydir_does_not_share_still_builds_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Used alone, every location object looks superseded to the sample: each look
    # then compacts the whole journal, drops nothing (every key once), and waits for
    # the next doubling; build() still returns each key's last entry.
    monkeypatch.setattr(_hint, "_FIRST_LOOK", 256)
    journal = HintJournal()
    recs = []
    looks = 0
    for i in range(5000):
        key = b"k%05d" % (i if i % 3 else i // 3)  # some keys twice, far apart
        off = FILE_HEADER_SIZE + 40 * i
        journal.add(key, (1 << 68) | (off << 32) | 40, 1000 + i, 0)
        recs.append((off, 40, 0, 1000 + i, 0, key, 0))
        if i % 100 == 99:
            before = journal._look_at
            journal.compact_tail()
            looks += journal._look_at != before
    assert looks <= 6, "one look per doubling, not one per call"
    assert journal.build(1, FILE_HEADER_SIZE + 40 * 5000) == build_hint(
        1, FILE_HEADER_SIZE + 40 * 5000, recs
    )


@pytest.mark.parametrize("seed", range(6))
def test_whole_passes_build_the_same_hint(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    # compact_tail with the look lowered, so whole passes run among tail passes over
    # a random record stream (values, TTL values, tombstones, batches): the hint
    # is byte for byte the one the uncompacted journal builds.
    monkeypatch.setattr(_hint, "_FIRST_LOOK", 64)
    rng = random.Random(seed)
    compacted, plain, off = compacted_and_plain(rng, rng.choice([30, 300, 3000]), FILE_HEADER_SIZE)
    assert compacted.intact and len(compacted.keys) <= len(plain.keys)
    assert compacted.build(1, off) == plain.build(1, off)


@pytest.mark.parametrize("stamp", [0, 1_764_000_000_123_456, 2**63 - 1, 2**64 - 1])
def test_new_keys_build_the_scanned_hint_with_every_timestamp(stamp: int) -> None:
    # Every entry a new key: build() copies the timestamps array whole (its u64s, "L"
    # where that is 8 bytes, "Q" elsewhere) instead of converting them one by one;
    # add() and extend() (a batch's one stamp) fill it. The bytes build_hint gives.
    journal = HintJournal()
    recs = []
    off = FILE_HEADER_SIZE
    for i in range(50):
        key = b"n%03d" % i
        if i < 20:
            journal.add(key, (1 << 68) | (off << 32) | 40, stamp - i if stamp else i, 0)
            recs.append((off, 40, 0, stamp - i if stamp else i, 0, key, 0))
            off += 40
    keys = [b"b%03d" % i for i in range(30)]
    locs = [(1 << 68) | ((off + 40 * i) << 32) | 40 for i in range(30)]
    journal.extend(keys, locs, stamp)
    recs += [(off + 40 * i, 40, 0, stamp, 0, k, 0) for i, k in enumerate(keys)]
    off += 40 * 30
    assert journal.build(1, off) == build_hint(1, off, recs)
