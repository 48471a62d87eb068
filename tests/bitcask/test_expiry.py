"""Active expiry in the engine: the sampler reclaims expired keys from memory, never
resurrects an older record (merge, reopen), keeps its counters, and is no write for
WATCH unless the watched key was live when watched (Redis 7's rule)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitcask
from bitcask import Set
from tests.bitcask.conftest import Clock


def seal(db: bitcask.Bitcask) -> int:
    with db._lock:
        fid = db._active_id
        db._rotate()
    return fid


def test_sampler_reclaims_expired_keys_and_counts_them(db: bitcask.Bitcask, clock: Clock) -> None:
    for i in range(100):
        db.put(b"short%d" % i, b"x", ttl=5)
    for i in range(50):
        db.put(b"long%d" % i, b"y", ttl=1000)
    db.put(b"plain", b"z")
    assert db.stored_keys() == 151 and len(db) == 151
    clock.now += 10
    assert len(db) == 51, "expired keys are invisible at once"
    assert db.stored_keys() == 151, "... and held in memory until reclaimed (as DBSIZE)"
    assert db.expiry_stats()["expires"] == 150
    reclaimed = 0
    for _ in range(8):  # one pass: each call looks at the next 20 of the 150 keys
        reclaimed += db.expire_sample(20)
    assert reclaimed == 100 and db.stored_keys() == 51
    stats = db.expiry_stats()
    assert stats["expires"] == 50 and stats["expired_keys"] == 100
    # the estimate of the TTL left comes from the samples of live keys
    assert 900_000 <= stats["avg_ttl_ms"] <= 1_000_000
    assert db.get(b"long3") == b"y" and db.get(b"plain") == b"z"
    assert sorted(db.keys(b"short")) == []


def test_expire_cycle_repeats_while_a_quarter_is_expired(db: bitcask.Bitcask, clock: Clock) -> None:
    for i in range(500):
        db.put(b"k%d" % i, b"v", ttl=1)
    clock.now += 2
    assert db.expire_cycle(budget_ms=10_000) == 500
    assert db.stored_keys() == 0 and db.expiry_stats() == {
        "expires": 0,
        "expired_keys": 500,
        "avg_ttl_ms": 0,
    }
    assert db.expire_cycle() == 0


def test_reclaim_frees_live_bytes_for_merge(db: bitcask.Bitcask, clock: Clock) -> None:
    for i in range(20):
        db.put(b"k%d" % i, b"v" * 100, ttl=1)
    before = db.stats()["live_bytes"]
    clock.now += 2
    assert db.expire_cycle() == 20
    assert before > 0
    assert db.stats()["live_bytes"] == 0
    report = db.merge()
    assert report.records_copied == 0


def test_persisted_and_rewritten_keys_are_not_reclaimed(db: bitcask.Bitcask, clock: Clock) -> None:
    db.put(b"a", b"1", ttl=5)
    db.put(b"b", b"2", ttl=5)
    db.put(b"c", b"3", ttl=5)
    db.expire_sample(1)  # the pass's snapshot now holds a, b, c
    db.persist(b"a")
    db.put(b"b", b"22", ttl=100)
    db.delete(b"c")
    clock.now += 10
    assert db.expire_cycle() == 0
    assert db.get(b"a") == b"1" and db.get(b"b") == b"22"
    assert db.expire_at_ms(b"b") == int((clock.now - 10 + 100) * 1000)


@pytest.mark.parametrize("path", ["merge-subset", "merge-all", "reopen"])
def test_reclaimed_key_never_resurrects_an_older_record(
    tmp_path: Path, clock: Clock, path: str
) -> None:
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"old")  # no TTL, in the first file
        db.put(b"other", b"o")
        seal(db)
        db.put(b"k", b"new", ttl=5)
        f2 = seal(db)
        clock.now += 10
        assert db.expire_cycle() == 1
        assert db.get(b"k") is None and db.stored_keys() == 1
        if path == "merge-subset":  # the first file stays outside the merge
            db._merge_files([f2])
        elif path == "merge-all":
            db.merge()
        assert db.get(b"k") is None
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.get(b"k") is None, "the older record came back"
        assert b"k" not in db and db.get(b"other") == b"o"
        db.merge()
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.get(b"k") is None and list(db) == [b"other"]


def test_expire_at_ms_is_exact(db: bitcask.Bitcask, clock: Clock) -> None:
    db.set(b"k", b"v", at_ms=1_700_000_123_457)
    assert db.expire_at_ms(b"k") == 1_700_000_123_457
    db.put(b"p", b"v")
    assert db.expire_at_ms(b"p") is None
    with pytest.raises(KeyError):
        db.expire_at_ms(b"absent")
    clock.now = 1_700_000_123.457
    with pytest.raises(KeyError):
        db.expire_at_ms(b"k")


def test_watch_aborts_when_a_live_key_expires_since_watch(
    db: bitcask.Bitcask, clock: Clock
) -> None:
    db.put(b"w", b"1", ttl=5)
    with db.watch(b"w") as w:
        clock.now += 10  # expired, not reclaimed yet
        assert db.commit([Set(b"x", b"1")], watch=w) is None
    db.put(b"w", b"1", ttl=5)
    with db.watch(b"w") as w:
        clock.now += 10
        assert db.expire_cycle() == 1  # reclaimed: the same answer
        assert db.commit([Set(b"x", b"2")], watch=w) is None
    assert db.get(b"x") is None


def test_reclaiming_a_key_expired_when_watched_is_no_change(
    db: bitcask.Bitcask, clock: Clock
) -> None:
    db.put(b"w", b"1", ttl=5)
    clock.now += 10
    with db.watch(b"w") as w:
        assert db.expire_cycle() == 1
        assert db.commit([Set(b"x", b"1")], watch=w) == [(True, None)]
    with db.watch(b"x") as w:  # no TTL: time passing changes nothing
        clock.now += 1000
        assert db.commit([Set(b"x", b"2")], watch=w) == [(True, b"1")]


def test_expire_sample_arguments_and_closed_store(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path, sync="never")
    with pytest.raises(ValueError):
        db.expire_sample(0)
    db.close()
    with pytest.raises(bitcask.StoreClosedError):
        db.expire_sample()
    assert db.expire_cycle() == 0


KEYS = st.sampled_from([b"a", b"b", b"c"])
STEP = st.one_of(
    st.tuples(st.just("put"), KEYS, st.sampled_from([None, 1, 5])),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 2, 10])),
    st.tuples(st.just("reclaim")),
    st.tuples(st.just("seal")),
    st.tuples(st.just("merge"), st.lists(st.integers(0, 7), max_size=3)),
    st.tuples(st.just("reopen")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_store_matches_a_model_across_reclaim_merge_and_reopen(steps: list[Any]) -> None:
    """Whatever order of writes, time, active expiry, (subset) merges and reopens:
    every key answers what a dict with expiries says, so nothing resurrects."""
    clock = Clock()
    model: dict[bytes, tuple[bytes, int]] = {}
    with tempfile.TemporaryDirectory() as path:
        db = bitcask.open(path, sync="never", clock=clock)
        try:
            for n, step in enumerate(steps):
                kind = step[0]
                if kind == "put":
                    value = b"v%d" % n
                    db.put(step[1], value, ttl=step[2])
                    exp = 0 if step[2] is None else int((clock.now + step[2]) * 1000)
                    model[step[1]] = (value, exp)
                elif kind == "delete":
                    db.delete(step[1])
                    model.pop(step[1], None)
                elif kind == "advance":
                    clock.now += step[1]
                elif kind == "reclaim":
                    db.expire_cycle()
                elif kind == "seal":
                    seal(db)
                elif kind == "merge":
                    sealed = sorted(db.files.sealed)
                    files = sorted({sealed[i % len(sealed)] for i in step[1]}) if sealed else []
                    if files:
                        db._merge_files(files)
                else:
                    db.close()
                    db = bitcask.open(path, sync="never", clock=clock)
                now_ms = clock.now * 1000
                want = {k: v for k, (v, exp) in model.items() if exp == 0 or exp > now_ms}
                got = {k: db.get(k) for k in (b"a", b"b", b"c")}
                assert {k: v for k, v in got.items() if v is not None} == want, step
                assert len(db) == len(want) <= db.stored_keys()
        finally:
            db.close()


def test_stale_ring_entries_are_skipped(db: bitcask.Bitcask, clock: Clock) -> None:
    """After a FLUSHALL-like mass delete the pass's snapshot is mostly stale: a
    cycle goes through it to the keys that still expire."""
    for i in range(2000):
        db.put(b"gone%d" % i, b"x", ttl=100)
    db.expire_sample(1)  # the pass's snapshot now holds the 2000 keys
    db.write_batch([("delete", b"gone%d" % i) for i in range(2000)])
    db.put(b"late", b"x", ttl=1)
    clock.now += 5
    assert db.expire_cycle(budget_ms=10_000) == 1
    assert db.stored_keys() == 0


def test_a_reclaimed_key_is_never_visible_without_its_expiry() -> None:
    # A reader takes no lock: between the two dict changes of a reclaim it must see the
    # key absent (map first), never present without its expiry (its expired value served).
    from bitcask._expiry import _drop
    from bitcask._keydir import Keydir

    kd = Keydir()
    seen: list[tuple[bool, bool]] = []

    class Watched(dict[bytes, int]):
        def __delitem__(self, key: bytes) -> None:
            seen.append((key in kd.map, key in kd.expiry))
            super().__delitem__(key)

        def pop(self, key: bytes, *default: Any) -> Any:
            seen.append((key in kd.map, key in kd.expiry))
            return super().pop(key, *default)

    kd.map, kd.expiry = Watched(), Watched()
    kd.map[b"k"] = (1 << 68) | (16 << 32) | 30
    kd.expiry[b"k"] = 5
    kd.live[1] = 30
    _drop(kd, b"k")
    assert b"k" not in kd.map and b"k" not in kd.expiry and kd.live[1] == 0
    # each step's state just before it: never (in map, not in expiry)
    assert seen == [(True, True), (False, True)]
