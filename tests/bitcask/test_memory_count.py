"""len(db) stays cheap when many keys expired and nothing reclaimed them.

``count_visible`` walked every key it had found expired at each count; the embedded
engine runs no sampler by itself, so they grew without bound (500,000 expired keys:
160 ms per ``len(db)``, per ``stats()``). Past ``PAST_MAX`` of them a count reclaims
them, as an access would (bitcask/_expiry.py): counts stay exact, a count walks at
most ``PAST_MAX`` keys, and below that expired keys stay stored until reclaimed, as
Redis's DBSIZE counts them.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import bitcask
from bitcask import _expiry
from tests.bitcask.conftest import Clock


def _visible(db: bitcask.Bitcask, now_ms: float) -> int:
    exp = db._kd.expiry
    return sum(1 for k in list(db._kmap) if (e := exp.get(k)) is None or e > now_ms)


def test_a_count_reclaims_expired_keys_past_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_expiry, "PAST_MAX", 40)
    clock = Clock()
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.write_batch([("put", b"a%03d" % i, b"v", 5) for i in range(30)])
        db.put(b"plain", b"p")
        clock.now += 10
        assert len(db) == 1
        assert db.stored_keys() == 31, "under the bound: stored until reclaimed, as DBSIZE"
        db.write_batch([("put", b"b%03d" % i, b"v", 5) for i in range(30)])
        db.put(b"a000", b"back", ttl=5)  # one found expired, written again
        clock.now += 10
        assert len(db) == 1  # 60 expired: past the bound, reclaimed by the count
        assert db.stored_keys() == 1 and len(db._kd.due_past) == 0
        assert db.expiry_stats()["expired_keys"] == 60
        assert db.get(b"plain") == b"p" and db.get(b"a000") is None


def test_counts_stay_exact_with_a_small_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_expiry, "PAST_MAX", 7)
    clock = Clock()
    rng = random.Random(11)
    with bitcask.open(tmp_path, sync="never", clock=clock, max_file_size=8192) as db:
        for step in range(2500):
            key = b"k%d" % rng.randrange(150)
            roll = rng.random()
            if roll < 0.4:
                db.put(key, b"v", ttl=rng.choice([1, 3, 20]))
            elif roll < 0.5:
                db.put(key, b"v")
            elif roll < 0.6:
                db.expire(key, rng.choice([0.5, 2, 60]))
            elif roll < 0.65:
                db.persist(key)
            elif roll < 0.75:
                db.delete(key)
            elif roll < 0.78:
                db.expire_sample(5)
            if step % 10 == 0:
                clock.now += rng.choice([0, 0.5, 2])
                assert len(db) == _visible(db, clock.now * 1000), step
                assert len(db._kd.due_past) <= 7
        assert db.stored_keys() >= len(db)
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert len(db) == _visible(db, clock.now * 1000)
