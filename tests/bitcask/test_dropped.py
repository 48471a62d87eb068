"""A store the program drops without close(), or leaves open at exit: closed anyway.

Before: the writer held the store's bound ``get`` and the background worker held
the writer, so a dropped store was never collected; its lock stayed held and the
next ``bitcask.open`` of the directory in the same process raised
StoreLockedError, and a process that exited without close() left its last file
without a hint (the next open scanned it). Each test here drops a store in one
way, then reopens the directory and checks every key and the recovery report.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import bitcask
from bitcask import backup as backup_mod
from bitcask import merge, snapshot
from bitcask._pins import Pins

ROOT = Path(__file__).resolve().parents[2]


def fill(db: bitcask.Bitcask, n: int = 300) -> dict[bytes, bytes]:
    """``n`` keys (rewritten once: merges have dead bytes to take); the expected state."""
    want: dict[bytes, bytes] = {}
    for rnd in range(2):
        for i in range(n):
            key, value = b"k%04d" % i, b"v%d.%d." % (rnd, i) + b"x" * 40
            db.put(key, value)
            want[key] = value
    return want


def assert_clean_reopen(path: Path, want: dict[bytes, bytes]) -> None:
    """The directory opens at once (lock released) and clean: every key answers its
    value, every file loads from its hint (the close sealed and hinted the last one),
    nothing was recovered."""
    with bitcask.open(path) as db:
        rec = db.recovery
        assert (rec.scanned_files, rec.truncated_bytes, rec.corrupt_records) == (0, 0, 0), rec
        assert (rec.dropped_batches, rec.merge, rec.events) == (0, "none", ()), rec
        assert rec.hinted_files >= 1
        assert dict(db.items()) == want
        assert db.get_many(list(want)) == list(want.values())


WARNINGS_ARE_ERRORS = ["-W", "error::ResourceWarning"]


def python(flags: list[str], script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """``script`` run by a new interpreter (bounded: 60 s), its output captured."""
    return subprocess.run(
        [sys.executable, *flags, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@contextmanager
def gc_off() -> Iterator[None]:
    """Only reference counting frees objects inside (no collection runs by itself)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_dropped_store_is_closed_when_its_last_reference_goes(tmp_path: Path) -> None:
    with gc_off():
        db = bitcask.open(tmp_path, sync="never", max_file_size=8192)
        want = fill(db)
        assert db.incr(b"n") == 1  # read-modify-write: the writer reads through the store
        want[b"n"] = b"1"
        gone = weakref.ref(db)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del db
            # The warning names its store as its source (tracemalloc says where it
            # was opened): only that reference keeps it now, and it is closed.
            assert [(w.category, w.source) for w in caught] == [(ResourceWarning, gone())]
            assert str(caught[0].message).startswith("unclosed store <Bitcask ")
            assert repr(gone()).endswith(" closed>")
            del caught
        assert gone() is None
    assert_clean_reopen(tmp_path, want)


class _Cycle:
    """An object referring to itself, holding a store: only a collection frees them."""

    def __init__(self, db: bitcask.Bitcask) -> None:
        self.me = self
        self.db = db


def dropped_in_a_cycle(path: Path) -> tuple[weakref.ref[bitcask.Bitcask], dict[bytes, bytes]]:
    """A store opened, filled and left in a cycle (call it with gc off); its weak
    reference and the expected state."""
    db = bitcask.open(path, sync="never")
    want = fill(db)
    _Cycle(db)
    return weakref.ref(db), want


def test_a_dropped_store_in_a_cycle_is_closed_by_a_collection(tmp_path: Path) -> None:
    with gc_off():
        gone, want = dropped_in_a_cycle(tmp_path)
        assert gone() is not None  # the cycle keeps it: only a collection frees it
        with pytest.warns(ResourceWarning, match="unclosed store"):
            gc.collect()
        assert gone() is None
    assert_clean_reopen(tmp_path, want)


def test_a_store_dropped_while_its_worker_merges(tmp_path: Path) -> None:
    # The background worker is inside a merge (stopped in its progress callback until
    # the close begins); dropping the store closes it: the merge gives up its copy,
    # the old files stay, every key answers.
    db = bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0)
    want = fill(db)
    writer, merges = db.writer, db.merges
    in_merge, outcome = threading.Event(), []

    def progress(done: int, total: int) -> None:
        in_merge.set()
        deadline = time.monotonic() + 30
        while not writer.closing and time.monotonic() < deadline:
            time.sleep(0.002)

    def task() -> None:
        try:
            merge.run_merge(merges, progress)
            outcome.append("finished")
        except bitcask.StoreClosedError:
            outcome.append("abandoned")

    writer.tasks.put(task)
    assert in_merge.wait(30)
    del db
    assert writer.closing and not any(t.is_alive() for t in writer.threads)
    assert outcome == ["abandoned"]
    assert not (tmp_path / "merge").exists()
    assert_clean_reopen(tmp_path, want)


def test_a_store_dropped_by_another_thread(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path, sync="interval", sync_interval_ms=5)
    want = fill(db)
    box = [db]
    del db
    closed = threading.Event()

    def last_user() -> None:
        store = box.pop()
        store.put(b"late", b"write")
        del store  # the last reference: closed here, in this thread
        closed.set()

    t = threading.Thread(target=last_user)
    t.start()
    t.join(30)
    assert closed.is_set()
    want[b"late"] = b"write"
    assert_clean_reopen(tmp_path, want)


def test_a_store_collected_by_its_own_worker_is_closed_by_another_thread(
    tmp_path: Path,
) -> None:
    # A gc pass can run in any thread, the store's worker too, which cannot join
    # itself and may hold the merge lock: a thread of its own closes the store.
    with gc_off():
        gone, want = dropped_in_a_cycle(tmp_path)
        writer = gone().writer  # type: ignore[union-attr]
        collected = threading.Event()
        writer.tasks.put(lambda: (gc.collect(), collected.set()))
        assert collected.wait(30)
    assert gone() is None
    for t in [t for t in threading.enumerate() if t.name == "bitcask-close"]:
        t.join(30)
    assert writer.closing and not any(t.is_alive() for t in writer.threads)
    del writer
    assert_clean_reopen(tmp_path, want)


def test_an_abandoned_iterator_pins_nothing_and_holds_the_store_until_dropped(
    tmp_path: Path,
) -> None:
    db = bitcask.open(tmp_path, sync="never", max_file_size=8192, merge_trigger=0)
    want = fill(db, 1500)  # more keys than one page of keys()
    keys, items = db.keys(), db.items()
    assert next(keys) == b"k0000" and next(items)[0] == b"k0000"
    # Left unfinished, they keep nothing from a merge and no write waits for them.
    assert len(db._pins) == 0
    for i in range(0, 1500, 2):
        db.delete(b"k%04d" % i)
        del want[b"k%04d" % i]
    before = db.data_files()
    report = db.merge()
    assert len(report.inputs) >= 2 and db.data_files() < before
    gone = weakref.ref(db)
    del db
    # A live iterator is a reference, as an open file's is: the store stays open ...
    assert gone() is not None and not gone()._closed  # type: ignore[union-attr]
    with pytest.raises(bitcask.StoreLockedError):
        bitcask.open(tmp_path)
    del keys, items  # ... until the iterators go too
    assert gone() is None
    assert_clean_reopen(tmp_path, want)


_EXITS_OPEN = """
import sys, bitcask
db = bitcask.open(sys.argv[1], sync=sys.argv[2], max_file_size=8192)
for i in range(400):
    db.put(b"k%04d" % (i % 300), b"v%d" % i)
print(db.recovery.hinted_files, flush=True)
"""


@pytest.mark.parametrize("sync", ["never", "interval", "always"])
def test_a_process_exiting_without_close_leaves_a_clean_store(tmp_path: Path, sync: str) -> None:
    proc = python([], _EXITS_OPEN, tmp_path, sync)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    want = {b"k%04d" % (i % 300): b"v%d" % i for i in range(400)}
    assert_clean_reopen(tmp_path, want)


_DROPS = """
import sys, bitcask
db = bitcask.open(sys.argv[1], sync="never")
db.put(b"k", b"v")
del db
db = bitcask.open(sys.argv[1], sync="never")  # reopened: the first was closed
db.put(b"k2", b"v2")
print("reopened", flush=True)
"""


@pytest.mark.parametrize("flags", [[], WARNINGS_ARE_ERRORS])
def test_the_resource_warning_is_silent_by_default_and_shown_when_asked(
    tmp_path: Path, flags: list[str]
) -> None:
    # As io and sqlite3: a ResourceWarning, ignored unless enabled. Made an error, it
    # is reported ("Exception ignored in") and the store is closed all the same, both
    # when dropped and when still open at exit.
    proc = python(flags, _DROPS, tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "reopened\n"), proc.stderr
    shown = [line for line in proc.stderr.splitlines() if line.startswith("ResourceWarning")]
    if flags:
        assert shown == [
            f"ResourceWarning: unclosed store <Bitcask {str(tmp_path)!r} never keys={n}>"
            for n in (1, 2)
        ], proc.stderr
    else:
        assert proc.stderr == ""
    assert_clean_reopen(tmp_path, {b"k": b"v", b"k2": b"v2"})


_FORKS = """
import os, sys, bitcask
db = bitcask.open(sys.argv[1], sync="never")
db.put(b"k", b"v")
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: the atexit hook runs in the child too
os.waitpid(pid, 0)
db.put(b"k2", b"v2")  # the parent's store is still its own, open and locked
try:
    bitcask.open(sys.argv[1])
except bitcask.StoreLockedError:
    print("still locked", flush=True)
"""


def test_a_forked_child_exiting_leaves_the_parents_store_alone(tmp_path: Path) -> None:
    proc = python(WARNINGS_ARE_ERRORS, _FORKS, tmp_path)
    # One warning, the parent's store's at its exit (the child did not open it), and
    # nothing else (the child's exit hook failed on its stand-in writer).
    assert (proc.returncode, proc.stdout) == (0, "still locked\n"), proc.stderr
    assert proc.stderr.count("Exception ignored") == 1, proc.stderr
    assert proc.stderr.count("ResourceWarning: unclosed store") == 1, proc.stderr
    assert_clean_reopen(tmp_path, {b"k": b"v", b"k2": b"v2"})


def test_a_readonly_store_dropped_lets_its_files_go(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        want = fill(db, 50)
    ro = bitcask.open(tmp_path, readonly=True)
    assert ro.get(b"k0001") == want[b"k0001"]
    files = ro.files
    with pytest.warns(ResourceWarning, match="unclosed store"):
        del ro
    assert not files.entries  # mappings and descriptors closed
    assert_clean_reopen(tmp_path, want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_the_exit_hook_closes_only_open_stores(tmp_path: Path) -> None:
    # Closed, abandoned (a simulated crash) and open stores side by side at exit.
    script = """
import sys, bitcask
a = bitcask.open(sys.argv[1] + "/a", sync="never"); a.put(b"a", b"1"); a.close()
b = bitcask.open(sys.argv[1] + "/b", sync="never"); b.put(b"b", b"2"); b._abandon()
c = bitcask.open(sys.argv[1] + "/c", sync="never"); c.put(b"c", b"3")
"""
    proc = python(WARNINGS_ARE_ERRORS, script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("ResourceWarning: unclosed store") == 1, proc.stderr
    assert f"{str(tmp_path / 'c')!r}" in proc.stderr
    assert_clean_reopen(tmp_path / "a", {b"a": b"1"})
    assert_clean_reopen(tmp_path / "c", {b"c": b"3"})
    with bitcask.open(tmp_path / "b") as b:  # the crash's: its last file scanned
        assert b.get(b"b") == b"2" and b.recovery.scanned_files == 1


def test_a_snapshot_left_after_its_first_step_lets_merges_go_when_its_pin_lapses(
    tmp_path: Path,
) -> None:
    # pin_sealed takes the merge lock until seal or release. A holder that gives up
    # in between (a server request cancelled while pin_sealed waited for a merge)
    # used to keep it for good, though its pin lapsed: every merge was refused
    # (MergeInProgressError), a backup waited forever, close() waited 60 s.
    now = [1000.0]
    db = bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0)
    db._pins = Pins(clock=lambda: now[0])
    want = fill(db)
    snapshot.pin_sealed(db, owner="gone", timeout=30)  # the handle dropped at once
    with pytest.raises(bitcask.MergeInProgressError):
        db.merge()  # the pin holds: nothing merges under the cut
    now[0] += 31  # the pin lapses (no read for 30 s)
    report = db.merge()
    assert len(report.inputs) >= 2 and len(db._pins) == 0
    backup = threading.Thread(target=db.backup, args=(tmp_path / "copy",), daemon=True)
    backup.start()  # waited for the lock forever before
    backup.join(30)
    assert not backup.is_alive()
    with bitcask.open(tmp_path / "copy") as copy:
        assert dict(copy.items()) == want
    assert not db.merges.lock.locked()  # close() waited 60 s for it
    db.close()
    assert_clean_reopen(tmp_path, want)


def test_a_snapshot_sealed_or_released_after_its_pin_lapsed_releases_nothing_twice(
    tmp_path: Path,
) -> None:
    # seal, release and a lapse race for the merge lock: whichever comes first lets
    # it go, the others do nothing (a second release() of a Lock is a RuntimeError,
    # or would free the lock another merge holds).
    now = [1000.0]
    with bitcask.open(tmp_path, sync="never") as db:
        db._pins = Pins(clock=lambda: now[0])
        want = fill(db, 20)
        snap = snapshot.pin_sealed(db, owner="slow", timeout=30)
        now[0] += 31
        assert db._pins.pinned() == set()  # lapsed: the merge lock is free
        assert db.merges.take_lock(0)  # a merge (this test) takes it
        snapshot.seal(db, snap)  # the slow holder comes back
        snapshot.release(db, snap.id)
        assert db.merges.lock.locked()  # still the merge's
        db.merges.lock.release()
        db.merge()
        assert dict(db.items()) == want


def test_a_store_dropped_during_a_backup_closes_when_the_backup_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backup's thread holds the store (its call does): dropped by everyone else
    # meanwhile, the store stays open until the copy is done, then closes there.
    db = bitcask.open(tmp_path / "db", sync="never", max_file_size=8192)
    want = fill(db)
    copying, go = threading.Event(), threading.Event()
    real_read = backup_mod._Limited.read

    def paused_read(self: object, n: int = -1) -> bytes:
        copying.set()
        go.wait(30)
        return real_read(self, n)  # type: ignore[arg-type]

    monkeypatch.setattr(backup_mod._Limited, "read", paused_read)
    gone = weakref.ref(db)
    t = threading.Thread(target=db.backup, args=(tmp_path / "copy",))
    t.start()
    assert copying.wait(30)
    del db
    assert gone() is not None and not gone()._closed  # type: ignore[union-attr]
    go.set()
    t.join(30)
    assert not t.is_alive() and gone() is None
    assert_clean_reopen(tmp_path / "db", want)
    assert_clean_reopen(tmp_path / "copy", want)


def test_a_store_closed_with_a_snapshot_cut_to_come_closes_at_once(tmp_path: Path) -> None:
    # The snapshot's first step holds the merge lock until its cut; a close (or a
    # drop, or the exit) of the store meanwhile waited 60 s for it. It lets the lock
    # go now; the cut that comes later fails as the store is closed.
    db = bitcask.open(tmp_path, sync="never")
    want = fill(db, 20)
    snap = snapshot.pin_sealed(db, owner="slow", timeout=300)
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not closer.is_alive() and snap.merge_lock is None
    with pytest.raises(bitcask.StoreClosedError):
        snapshot.seal(db, snap)
    snapshot.release(db, snap.id)
    assert not db.merges.lock.locked()
    assert_clean_reopen(tmp_path, want)
