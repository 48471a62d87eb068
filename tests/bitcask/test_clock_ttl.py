"""TTLs under a stepped clock, and expiries through hints, merge, backup and reopen.

An expiry is absolute (ms since the epoch, in the record): a clock stepped forward
expires keys early, one stepped back keeps them longer, as in Redis. ``now_ms >=
expiry`` is expired, in every read path at once. Whatever carries a record (a hint,
a merge output, a backup) carries its expiry unchanged, so a copy never serves a key
whose expiry has passed by the clock of the store that opens it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask
from bitcask import merge as merge_mod

from .conftest import Clock

HOUR = 3600.0


def _seen(db: bitcask.Bitcask, key: bytes) -> tuple[object, ...]:
    """Every way a reader can see ``key``: get, in, get_many, keys, len, ttl."""
    try:
        ttl: object = db.ttl(key)
    except KeyError:
        ttl = "absent"
    return (db.get(key), key in db, db.get_many([key])[0], key in list(db), len(db), ttl)


def test_a_forward_step_expires_a_key_and_a_backward_one_keeps_it(
    tmp_path: Path, clock: Clock
) -> None:
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"v", ttl=10)
        clock.now += HOUR
        assert _seen(db, b"k") == (None, False, None, False, 0, "absent")
        clock.now -= 2 * HOUR  # an hour before the write: ten seconds and an hour left
        assert _seen(db, b"k") == (b"v", True, b"v", True, 1, HOUR + 10)
        clock.now += HOUR + 5
        assert _seen(db, b"k") == (b"v", True, b"v", True, 1, 5)


def test_the_boundary_is_expired_in_every_read_path(tmp_path: Path, clock: Clock) -> None:
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"v", ttl=10)
        at = db.expire_at_ms(b"k")
        assert at == int((clock.now + 10) * 1000)
        clock.now = (at - 1) / 1000
        assert _seen(db, b"k")[:5] == (b"v", True, b"v", True, 1)
        assert db.expire_at_ms(b"k") == at
        clock.now = at / 1000  # now_ms == expiry: expired (docs/format.md, "Time")
        assert _seen(db, b"k") == (None, False, None, False, 0, "absent")
        with pytest.raises(KeyError):
            db.expire_at_ms(b"k")
        assert db.value_bytes([b"k"]) == 0
        assert db.expire_sample() == 1 and db.expiry_stats()["expired_keys"] == 1


def test_expire_and_set_against_a_stepped_clock(tmp_path: Path, clock: Clock) -> None:
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"v")
        start = int(clock.now * 1000)
        assert db.expire(b"k", at_ms=start + 5000)
        clock.now -= HOUR  # the expiry stays where it was: an hour and 5 s away
        assert db.ttl(b"k") == HOUR + 5
        assert db.set(b"k", b"w", keep_ttl=True) == (True, b"v")
        assert db.expire_at_ms(b"k") == start + 5000
        assert db.persist(b"k") and db.expire_at_ms(b"k") is None
        # an absolute expiry in the past by the (stepped) clock deletes at once
        assert db.expire(b"k", at_ms=int(clock.now * 1000))
        assert db.get(b"k") is None and db.stored_keys() == 0


@pytest.mark.parametrize("hints", [True, False], ids=["hints", "scan"])
def test_a_reopen_loads_each_expiry_exactly(tmp_path: Path, clock: Clock, hints: bool) -> None:
    with bitcask.open(tmp_path, sync="never", clock=clock, max_file_size=256) as db:
        for i in range(40):  # several sealed files (hints) and the active one
            db.put(b"k%d" % i, b"v" * 20, ttl=100 + i)
        db.put(b"plain", b"p")
        before = {k: db.expire_at_ms(k) for k in db}
    assert len(before) == 41
    bitcask.repair(tmp_path)  # rebuilds the hints from the records: the same expiries
    with bitcask.open(tmp_path, sync="never", clock=clock, hint_files=hints) as db:
        assert db.recovery.hinted_files > 0 if hints else db.recovery.hinted_files == 0
        assert {k: db.expire_at_ms(k) for k in db} == before
        clock.now += 119.5  # k0..k19 expired (100..119 s), k20..k39 live
        assert len(db) == 21 and db.get(b"k19") is None and db.get(b"k20") == b"v" * 20
    with bitcask.open(tmp_path, sync="never", clock=clock, hint_files=hints) as db:
        assert len(db) == 21 and sorted(db) == sorted(
            [b"plain", *(b"k%d" % i for i in range(20, 40))]
        )
    with bitcask.open(tmp_path, readonly=True, clock=clock) as db:
        assert len(db) == 21 and db.get(b"k0") is None


def test_a_key_expiring_between_merge_copy_and_install_stays_gone(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge copies k (live at its start) with its expiry; the clock passes the
    # expiry before the copy is installed: k answers absent before and after.
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"v", ttl=10)
        db.put(b"p", b"plain")

        def step(phase: str) -> None:
            if phase == "copied":
                clock.now += 11

        monkeypatch.setattr(merge_mod, "crash_point", step)
        report = db.merge()
        assert report.records_copied == 2 and report.expired_dropped == 0
        assert (db.get(b"k"), b"k" in db, len(db), db.get(b"p")) == (None, False, 1, b"plain")
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert (db.get(b"k"), len(db), db.get(b"p")) == (None, 1, b"plain")
        assert db.merge().expired_dropped == 1  # the next merge drops it
        assert db.stored_keys() == 1


def test_a_backup_serves_no_key_expired_by_the_clock_that_opens_it(
    tmp_path: Path, clock: Clock
) -> None:
    with bitcask.open(tmp_path / "db", sync="never", clock=clock) as db:
        db.put(b"short", b"s", ttl=10)
        db.put(b"long", b"l", ttl=HOUR)
        db.put(b"gone", b"g", ttl=1)
        db.put(b"plain", b"p")
        clock.now += 2
        assert db.expire_sample() == 1  # "gone" reclaimed in memory: nothing on disk
        at = {k: db.expire_at_ms(k) for k in (b"short", b"long")}
        db.backup(tmp_path / "copy")
    with bitcask.open(tmp_path / "copy", sync="never", clock=clock) as copy:
        assert {k: copy.expire_at_ms(k) for k in (b"short", b"long")} == at
        assert sorted(copy) == [b"long", b"plain", b"short"]
    clock.now += 60  # restored a minute later: "short" has expired meanwhile
    with bitcask.open(tmp_path / "copy", sync="never", clock=clock) as copy:
        assert sorted(copy) == [b"long", b"plain"]
        assert (copy.get(b"short"), copy.get(b"gone")) == (None, None)


def test_a_reclaimed_key_answers_again_after_the_clock_steps_back_and_a_reopen(
    tmp_path: Path, clock: Clock
) -> None:
    # Documented (docs/format.md, "Time"): reclaiming writes nothing, the record is the
    # only state, so a key the sampler reclaimed after a forward step answers again
    # after a backward step and a reopen, until its expiry passes by the new clock;
    # a merge that ran meanwhile dropped it for good. Redis writes a DEL instead.
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"v", ttl=10)
        db.put(b"m", b"v", ttl=10)
        clock.now += HOUR
        assert db.expire_sample() == 2
        clock.now -= HOUR
        assert (db.get(b"k"), len(db)) == (None, 0)  # gone while this store stays open
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert (db.get(b"k"), db.get(b"m")) == (b"v", b"v")
        clock.now += HOUR
        assert db.merge().expired_dropped == 2
        clock.now -= HOUR
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert (db.get(b"k"), db.get(b"m"), len(db)) == (None, None, 0)
