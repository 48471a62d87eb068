"""Merge: reclaiming space, tombstones across subset merges, TTL, concurrency, crashes."""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from pathlib import Path

import pytest

import bitcask
from bitcask import MergeInProgressError, _files, _merge_copy, _merge_swap, merge


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def seal(db: bitcask.Bitcask) -> int:
    """Rotate so the current active file is sealed; return its id."""
    with db._lock:
        fid = db._active_id
        db._rotate()
    return fid


def test_merge_reclaims_overwritten_deleted_and_expired(tmp_path: Path) -> None:
    clock = FakeClock()
    with bitcask.open(tmp_path, sync="never", max_file_size=4096, clock=clock) as db:
        for rnd in range(3):
            for i in range(100):
                db.put(b"k%03d" % i, b"v%d-%d" % (rnd, i) + b"." * 20)
        for i in range(0, 100, 4):
            db.delete(b"k%03d" % i)
        for i in range(1, 100, 4):
            db.put(b"k%03d" % i, b"short-lived", ttl=5)
        clock.now += 10
        want = dict(db.items())
        before = db.stats()
        seen: list[tuple[int, int]] = []
        report = db.merge(progress=lambda done, total: seen.append((done, total)))
        after = db.stats()
        assert dict(db.items()) == want
        assert report.expired_dropped == 25
        assert report.records_copied == len(want) == 50
        assert after["dead_bytes"] < before["dead_bytes"] / 10
        assert after["disk_bytes"] < before["disk_bytes"] / 3
        assert report.reclaimed_bytes > 0 and after["merges"] == 1
        assert seen and seen[-1][0] == seen[-1][1] == report.bytes_before
        assert all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))
        for f in after["files"][:-1]:
            assert f["dead_bytes"] == 16 or f["live_bytes"] == 0
        assert "merge:" in str(report) and report.to_dict()["inputs"]
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert dict(db.items()) == want
        assert db.recovery.scanned_files == 0  # merge outputs came with hints
    assert bitcask.check(tmp_path).ok


def test_tombstones_survive_subset_merges_and_reopen(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v1")
        f1 = seal(db)
        db.put(b"k", b"v2")
        f2 = seal(db)
        db.delete(b"k")
        db.put(b"other", b"x")
        f3 = seal(db)
        # The tombstone's own target (f2) is in the subset, but v1 sits in f1 outside it.
        report = db._merge_files([f2, f3])
        assert report.tombstones_kept == 1
        assert db.get(b"k") is None
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"k") is None and db.get(b"other") == b"x"
        files = [f["id"] for f in db.stats()["files"]]
        assert f1 in files
        # Merging the merge output alone still keeps the tombstone (f1 is older and outside).
        out = next(fid for fid in files if fid > f3)
        db._merge_files([out])
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"k") is None
        report = db.merge()  # a full merge drops every tombstone
        assert report.tombstones_kept == 0
        assert db.get(b"k") is None and dict(db.items()) == {b"other": b"x"}
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == {b"other": b"x"}


@pytest.mark.parametrize(
    "subset",
    [pytest.param("first", id="oldest-file"), pytest.param("tomb", id="tombstone-file")],
)
def test_no_subset_merge_resurrects_a_deleted_key(tmp_path: Path, subset: str) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v1")
        f1 = seal(db)
        db.delete(b"k")
        f2 = seal(db)
        db._merge_files([f1] if subset == "first" else [f2])
        assert db.get(b"k") is None
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"k") is None


def test_merge_drops_expired_without_resurrecting_older_values(tmp_path: Path) -> None:
    clock = FakeClock()
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"old")
        seal(db)
        db.put(b"k", b"new", ttl=5)
        f2 = seal(db)
        clock.now += 6
        assert db.get(b"k") is None
        report = db._merge_files([f2])
        assert report.expired_dropped == 1 and report.tombstones_kept == 1
        assert db.get(b"k") is None and b"k" not in db
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.get(b"k") is None


def test_a_key_expiring_during_a_subset_merge_stays_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge fixes its clock when it starts. k expires after that and active
    # expiry reclaims it before the merge reaches its record: the record no longer
    # shadows "old" in the file outside the merge, so it must become a tombstone.
    clock = FakeClock()
    db = bitcask.open(tmp_path, sync="never", clock=clock)
    db.put(b"k", b"old")
    seal(db)
    db.put(b"k", b"new", ttl=5)
    f2 = seal(db)
    real_scan = _merge_copy.scan

    def scan_later(*args: object, **kwargs: object) -> object:
        clock.now += 6  # meanwhile, k expires and the sampler drops it
        while db.expire_sample(20):
            pass
        return real_scan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_merge_copy, "scan", scan_later)
    report = db._merge_files([f2])
    monkeypatch.undo()
    assert report.tombstones_kept == 1
    assert db.get(b"k") is None
    db.close()
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.get(b"k") is None


@pytest.mark.parametrize("gone", ["deleted", "expired"])
def test_a_batch_record_made_a_tombstone_by_a_subset_merge_stays_one(
    tmp_path: Path, gone: str
) -> None:
    # A record written in a batch (IN_BATCH) that a subset merge turns into a
    # tombstone: re-encoding it "without batch flags" kept its old flags and made
    # the tombstone's payload (u32 file id) a value with the old expiry.
    clock = FakeClock()
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        db.put(b"k", b"old")
        seal(db)
        db.write_batch([("put", b"k", b"new", 100 if gone == "deleted" else 5)])
        if gone == "deleted":
            db.write_batch([("delete", b"k")])
        else:
            clock.now += 6
            while db.expire_sample(20):
                pass
        f2 = seal(db)
        assert db._merge_files([f2]).tombstones_kept >= 1
    clock.now -= 6  # a clock behind the writer's (a readonly reader elsewhere)
    for readonly in (True, False):
        with bitcask.open(tmp_path, readonly=readonly, clock=clock) as db:
            assert db.get(b"k") is None


def test_merge_in_progress_error_and_backup_pauses_merges(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v")
        assert db._merge_lock.acquire(blocking=False)
        try:
            with pytest.raises(MergeInProgressError):
                db.merge()
        finally:
            db._merge_lock.release()
        db.merge()


def test_merge_concurrent_with_writer_and_readers(tmp_path: Path) -> None:
    n = 2000
    with bitcask.open(tmp_path, sync="never", max_file_size=32 * 1024) as db:
        for i in range(n):
            db.put(b"k%05d" % i, b"initial-%05d" % i)
        stop = threading.Event()
        errors: list[BaseException] = []
        written: dict[bytes, bytes] = {}

        def reader() -> None:
            try:
                while not stop.is_set():
                    for i in range(0, n, 37):
                        v = db.get(b"k%05d" % i)
                        assert v is not None and v.endswith(b"%05d" % i), v
            except BaseException as exc:
                errors.append(exc)

        def writer() -> None:
            try:
                rnd = 0
                while not stop.is_set() and rnd < 20:
                    for i in range(rnd, n, 20):
                        key, value = b"k%05d" % i, b"round%02d-%05d" % (rnd, i)
                        db.put(key, value)
                        written[key] = value
                    rnd += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        merger_reports = []
        for _ in range(3):
            merger_reports.append(db.merge())
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        want = {b"k%05d" % i: b"initial-%05d" % i for i in range(n)}
        want.update(written)
        assert dict(db.items()) == want
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == want


PHASES = ["reserved", "copied", "manifest", "renamed", "unlinked"]


@pytest.mark.parametrize("phase", [pytest.param(p, id=p) for p in PHASES])
def test_merge_crash_at_each_phase_leaves_a_consistent_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    db = bitcask.open(tmp_path, sync="never", max_file_size=2048)
    for rnd in range(3):
        for i in range(60):
            db.put(b"k%02d" % i, b"r%d-%02d" % (rnd, i) + b"-" * 20)
    for i in range(0, 60, 3):
        db.delete(b"k%02d" % i)
    want = dict(db.items())

    def crash(at: str) -> None:
        if at == phase:
            raise merge._SimulatedCrash(at)

    monkeypatch.setattr(merge, "crash_point", crash)
    with pytest.raises(merge._SimulatedCrash):
        db.merge()
    db._abandon()
    monkeypatch.undo()
    expected_state = {
        "reserved": "none",
        "copied": "discarded",
        "manifest": "finished",
        "renamed": "finished",
        "unlinked": "finished",
    }[phase]
    readonly = bitcask.open(tmp_path, readonly=True)
    try:
        assert dict(readonly.items()) == want  # any on-disk state in between is consistent
    finally:
        readonly.close()
    with bitcask.open(tmp_path, sync="never", max_file_size=2048) as db:
        assert db.recovery.merge == expected_state
        assert dict(db.items()) == want
        assert not (tmp_path / "merge").exists()
        db.merge()
        assert dict(db.items()) == want
    assert bitcask.check(tmp_path).ok


@pytest.mark.parametrize("failing", ["rename", "unlink"])
def test_a_failed_merge_swap_stops_writes_so_no_delete_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # EIO while the swap renames outputs into place or unlinks the inputs, after the
    # manifest: the outputs on disk are unknown to the file table. Were writes to go
    # on, `delete k` then a merge dropped the tombstone (every file the table knows
    # was merged) and the next open brought k back from the orphaned output.
    db = bitcask.open(tmp_path, sync="never", max_file_size=2048)
    for i in range(120):
        db.put(b"k%02d" % (i % 40), b"v%03d" % i + b"-" * 60)
    want = dict(db.items())
    real = getattr(_merge_swap.os, failing if failing == "unlink" else "replace")
    hit = 0

    def broken(src: str, *args: object) -> None:
        nonlocal hit
        if str(src).endswith(".data"):
            hit += 1
            if hit == 2:  # after the swap has changed something on disk
                raise OSError(errno.EIO, os.strerror(errno.EIO), src)
        real(src, *args)

    monkeypatch.setattr(_merge_swap.os, failing if failing == "unlink" else "replace", broken)
    with pytest.raises(OSError):
        db.merge()
    monkeypatch.undo()
    assert hit == 2 and (tmp_path / "merge" / "MANIFEST").exists()
    with pytest.raises(bitcask.ReadOnlyError, match="merge swap failed"):
        db.delete(b"k01")
    assert "restart" in (db.readonly_reason or "")
    assert db.stats()["disk"]["state"] == "fsync_failed"
    assert dict(db.items()) == want  # reads go on
    db.close()
    with bitcask.open(tmp_path, sync="never", max_file_size=2048) as db:
        assert db.recovery.merge == "finished"
        assert dict(db.items()) == want
        assert db.delete(b"k01")
        db.merge()
    with bitcask.open(tmp_path) as db:
        assert db.get(b"k01") is None
        assert len(db) == len(want) - 1
    assert bitcask.check(tmp_path).ok


@pytest.mark.parametrize("where", ["repoint", "swap"])
def test_a_merge_interrupted_past_its_manifest_stops_writes_so_no_key_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # Ctrl-C (any exception but an OSError) after the manifest, while the keydir was
    # being pointed at the outputs (still in merge/) or while the swap renamed them:
    # the store stayed writable, and the next merge (by hand, or an auto-merge) began
    # by deleting merge/, outputs the keydir pointed at included, then unlinked the
    # inputs. The next open lost those keys: 8 of 41 here. Now writes and merges stop
    # until a reopen, which finishes the swap from the manifest.
    db = bitcask.open(tmp_path, sync="never", max_file_size=2048, merge_trigger=0)
    for i in range(120):
        db.put(b"k%02d" % (i % 40), b"v%03d" % i + b"-" * 60)
    db.put(b"gone", b"x")
    db.delete(b"gone")
    want = dict(db.items())
    calls = 0

    def interrupt(*args: str) -> None:
        nonlocal calls
        if where == "repoint" or args[0].endswith(".data"):
            calls += 1
            if calls == 2:  # some keys already point at the outputs, or one is renamed
                raise KeyboardInterrupt
        if where == "swap":
            real_replace(*args)

    real_replace = os.replace
    if where == "repoint":
        monkeypatch.setattr(_merge_swap, "_INSTALL_STEP", 4)
        monkeypatch.setattr(_merge_swap, "_yield_lock", interrupt)
    else:
        monkeypatch.setattr(_merge_swap.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        db.merge()
    monkeypatch.undo()
    assert calls == 2 and (tmp_path / "merge" / "MANIFEST").exists()
    with pytest.raises(bitcask.ReadOnlyError, match="merge interrupted"):
        db.put(b"k01", b"after")
    with pytest.raises(bitcask.ReadOnlyError, match="reopen"):
        db.merge()
    assert db.readonly_reason is not None and "KeyboardInterrupt" in db.readonly_reason
    assert db.stats()["disk"]["state"] == "ok"  # no disk fault: nothing to probe
    assert dict(db.items()) == want  # reads go on, from inputs and outputs alike
    assert db.get(b"gone") is None
    db.close()
    with bitcask.open(tmp_path, sync="never", max_file_size=2048) as db:
        assert db.recovery.merge == "finished"
        assert dict(db.items()) == want
        db.put(b"k01", b"after")
        db.merge()
    want[b"k01"] = b"after"
    with bitcask.open(tmp_path) as db:
        assert dict(db.items()) == want
        assert db.get(b"gone") is None
    assert bitcask.check(tmp_path).ok


@pytest.mark.parametrize("later", ["maps", "fails"])
def test_a_file_sealed_without_a_free_descriptor_is_merged_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: str
) -> None:
    # The merge seals the active file first; with the descriptor table full, the
    # sealed file cannot be mapped and is served with pread. The merge used to read
    # that unmapped file as empty: "1 files -> 0, 0 copied", every key in it gone.
    db = bitcask.open(tmp_path, sync="never")
    for i in range(10):
        db.put(b"k%d" % i, b"v%d" % i)
    want = dict(db.items())
    real_map = _files.map_file

    def no_fds(path: str) -> object:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(_files, "map_file", no_fds)  # at the rotation
    if later == "fails":
        monkeypatch.setattr(merge, "map_file", no_fds)  # and still when the merge reads
    report = db.merge()
    monkeypatch.undo()
    assert report.records_copied == (10 if later == "maps" else 0)
    assert dict(db.items()) == want
    db.put(b"k1", b"new")
    db.merge()
    want[b"k1"] = b"new"
    assert dict(db.items()) == want
    db.close()
    with bitcask.open(tmp_path) as db:
        assert dict(db.items()) == want
    assert real_map is _files.map_file


def test_a_merge_that_cannot_map_its_outputs_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of descriptors once the outputs are written: the merge fails before its
    # manifest (it used to swap the files on disk, then fail to map the outputs,
    # leaving the file table and the directory disagreeing).
    db = bitcask.open(tmp_path, sync="never", max_file_size=1024)
    for i in range(60):
        db.put(b"k%d" % (i % 20), b"v%d" % i + b"." * 40)
    want = dict(db.items())
    real_map = merge.map_file

    def no_fds_in_merge_dir(path: str) -> object:
        if os.sep + merge.MERGE_DIR + os.sep in path:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_map(path)

    monkeypatch.setattr(merge, "map_file", no_fds_in_merge_dir)
    with pytest.raises(OSError):
        db.merge()
    monkeypatch.undo()
    assert not (tmp_path / merge.MERGE_DIR).exists()
    assert dict(db.items()) == want
    db.delete(b"k1")
    del want[b"k1"]
    db.merge()
    db.close()
    with bitcask.open(tmp_path) as db:
        assert dict(db.items()) == want


def test_auto_merge_runs_in_the_background(tmp_path: Path) -> None:
    with bitcask.open(
        tmp_path, sync="never", max_file_size=4096, merge_trigger=0.5, merge_min_dead_bytes=1
    ) as db:
        for _ in range(20):
            db.put(b"same", b"x" * 500)
        deadline = time.monotonic() + 10
        while db.stats()["merges"] == 0 and time.monotonic() < deadline:
            db.put(b"same", b"y" * 500)
            time.sleep(0.01)
        assert db.stats()["merges"] >= 1
        assert db.get(b"same") == b"y" * 500
        assert db.stats()["last_merge_error"] is None


def test_merge_of_an_empty_store(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        report = db.merge()
        assert report.outputs == () and report.records_copied == 0
        db.put(b"k", b"v")
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"k") == b"v"
