"""scan() from the start again and again (the chunked delete a LevelDB or dbm user
writes, next(iter(db)) for a first key): the deleted keys a scan walks past leave the
sorted index (bitcask/_keydir.py, ``Keydir._cut``) and the expired ones the keydir
(bitcask/_db_scan.py), so no later scan walks them again; no live key ever leaves."""

from __future__ import annotations

import threading

import pytest

from bitcask import Bitcask
from bitcask._db_scan import RECLAIM_WALKED
from bitcask._keydir import Keydir

from .conftest import Clock


def _index_len(db: Bitcask) -> int:
    index = db.keydir._index
    assert index is not None
    return len(index)


def test_a_scan_takes_the_deleted_run_it_walked_out_of_the_index(db: Bitcask) -> None:
    # Before: the index kept every deleted key until half of it was deleted, and every
    # scan from the start walked them all again: deleting 100,000 keys a page of 100
    # at a time (scan(limit=100), delete those, again) took 26 s, now 2.5 s.
    db.write_batch([("put", b"k%05d" % i, b"v") for i in range(20_000)])
    assert db.scan(limit=1) == [b"k00000"]  # builds the index
    db.write_batch([("delete", b"k%05d" % i) for i in range(2_000)])
    assert _index_len(db) == 20_000  # deleting leaves the index as it is
    assert db.scan(limit=2) == [b"k02000", b"k02001"]
    assert _index_len(db) == 18_000  # the run it walked is gone
    assert db.scan(b"k0", after=b"k00500", limit=1) == [b"k02000"]
    assert len(list(db.keys())) == 18_000 == len(db)


def test_the_chunked_delete_from_the_start_empties_the_store(db: Bitcask) -> None:
    db.write_batch([("put", b"k%05d" % i, b"v") for i in range(6_000)])
    pages = 0
    while page := db.scan(limit=100):
        assert page == sorted(page)
        db.write_batch([("delete", k) for k in page])
        pages += 1
        assert pages <= 60
    assert pages == 60 and len(db) == 0 and db.stored_keys() == 0


def test_a_key_deleted_and_written_again_stays_in_the_index(db: Bitcask) -> None:
    db.write_batch([("put", b"k%05d" % i, b"v") for i in range(4_000)])
    db.scan(limit=1)
    db.write_batch([("delete", b"k%05d" % i) for i in range(1_000)])
    db.put(b"k00500", b"again")  # in the run, in the map again before any scan
    assert db.scan(limit=2) == [b"k00500", b"k01000"]
    assert db.get(b"k00500") == b"again"
    assert list(db.keys(b"k005")) == [b"k00500"]
    assert len(list(db.keys())) == 3_001


def test_scans_racing_deletes_and_rewrites_never_lose_a_live_key(db: Bitcask) -> None:
    # A writer deletes runs of keys and writes some back while scanners page from the
    # start (each cutting the runs it walks); once it stops, a full scan lists exactly
    # the keys present.
    n = 3_000
    db.write_batch([("put", b"k%05d" % i, b"v") for i in range(n)])
    db.scan(limit=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def scanner() -> None:
        try:
            for _ in range(2_000):
                if stop.is_set():
                    return
                page = db.scan(limit=50)
                assert page == sorted(page)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scanner) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for round_ in range(20):
            lo = round_ * 100  # runs of 299 deleted keys, long enough to be cut
            db.write_batch([("delete", b"k%05d" % i) for i in range(lo, lo + 1_000)])
            db.write_batch([("put", b"k%05d" % i, b"w") for i in range(lo, lo + 1_000, 300)])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors
    present = sorted(db.keydir.map)
    assert list(db.keys()) == present
    assert len(present) == len(db)


def test_a_key_written_again_between_the_walk_and_the_cut_stays(
    db: Bitcask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race the cut checks again under the lock for: a scan walks a deleted key,
    # the writer writes it again, another scan folds the new keys (the key is in the
    # index still, so the fold adds nothing), and only then the first scan cuts.
    db.write_batch([("put", b"k%05d" % i, b"v") for i in range(4_000)])
    db.scan(limit=1)
    db.write_batch([("delete", b"k%05d" % i) for i in range(1_000)])
    kd = db.keydir
    cut = Keydir._cut

    def cut_after_a_rewrite_and_a_fold(self: Keydir, index: list[bytes], a: int, b: int) -> None:
        db.put(index[a], b"back")
        with self._index_lock:
            self._refresh_index()
        cut(self, index, a, b)

    monkeypatch.setattr(Keydir, "_cut", cut_after_a_rewrite_and_a_fold)
    assert db.scan(limit=1) == [b"k01000"]
    monkeypatch.undo()
    assert db.scan(limit=1) == [b"k00000"]
    assert list(db.keys())[:2] == [b"k00000", b"k01000"]
    assert len(list(db.keys())) == 3_001 == len(kd.map)


def expired_before_live(db: Bitcask, clock: Clock, expired: int) -> None:
    """``expired`` keys a0000... written first and expired, then b"z0".. b"z2" and b"m"
    (a TTL not passed yet) alive."""
    db.write_batch([("put", b"a%04d" % i, b"x", 10) for i in range(expired)])
    db.write_batch([("put", b"z%d" % i, b"y") for i in range(3)])
    db.put(b"m", b"later", ttl=100)
    clock.now += 20
    assert db.stored_keys() == expired + 4 and len(db) == 4


def test_a_scan_reclaims_the_expired_keys_it_walked_past(db: Bitcask, clock: Clock) -> None:
    # Before: they stayed in the keydir (the engine runs no sampler by itself) and
    # every scan from before them walked them again: 100 scan(limit=10), or
    # next(iter(db)), past 100,000 expired keys took 11.9 s. Redis's SCAN, too,
    # expires the keys it visits.
    expired_before_live(db, clock, 2_000)
    assert db.scan(limit=2) == [b"m", b"z0"]
    assert db.stored_keys() == 4  # the 2,000 walked past are reclaimed
    assert db.expiry_stats()["expired_keys"] == 2_000
    assert next(iter(db)) == b"m" and len(db) == 4
    assert db.get(b"a0001") is None and dict(db.items(b"a")) == {}


def test_a_few_expired_keys_walked_past_are_left_to_the_sampler(db: Bitcask, clock: Clock) -> None:
    db.write_batch([("put", b"a%d" % i, b"x", 10) for i in range(RECLAIM_WALKED - 1)])
    db.put(b"z", b"y")
    clock.now += 20
    assert db.scan() == [b"z"]
    assert db.stored_keys() == RECLAIM_WALKED  # no lock taken for so few
    assert db.expire_cycle() == RECLAIM_WALKED - 1


def test_a_scan_never_waits_for_the_writer_to_reclaim(db: Bitcask, clock: Clock) -> None:
    # The server scans on its event loop: with the writer's lock held (a group commit
    # in its fsync), the scan answers at once and leaves the keys for the next one.
    expired_before_live(db, clock, 500)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=writer)
    holder.start()
    assert held.wait(10)
    pages: list[list[bytes]] = []
    scanner = threading.Thread(target=lambda: pages.append(db.scan(limit=1)))
    scanner.start()
    scanner.join(10)
    finished = not scanner.is_alive()
    release.set()
    holder.join(10)
    scanner.join(10)
    assert finished and pages == [[b"m"]]
    assert db.stored_keys() == 504  # not reclaimed while the writer held the lock
    assert db.scan(limit=1) == [b"m"] and db.stored_keys() == 4
