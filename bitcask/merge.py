"""Merge: rewrite live records into fresh files and drop the rest, online and crash-safe.

Strategy (invariants):
1. Under the write lock (``_plan``): seal every file by rotating; S = the files to
   merge (all sealed files, or a subset: a fold of small files, tests); reserve ids
   ``next .. next+len(S)`` for the outputs and give the new active file the id
   after that range. Outputs therefore sort after every input and before every
   write made during the merge, so loading in id order stays history order. Ids are
   never reused (a reader may still hold an old location). Pinned (snapshot) and
   unloadable files stay out of S, and count as outside it.
2. In the caller's thread, no lock: copy into ``merge/`` each record whose keydir
   entry still equals its location and has not expired; tombstones only where an
   older file stays outside S (bitcask/_merge_copy.py).
3. Hints for the outputs; fsync outputs, hints and the directory; map the outputs
   (nothing past the manifest may need a descriptor); then the completion marker
   ``merge/MANIFEST`` (inputs, outputs, CRC), fsynced.
4. Point the keydir at the outputs a slice at a time while writes go on, then,
   under the write lock, swap the files on disk and in the file table
   (bitcask/_merge_swap.py). Any failure past the manifest (an I/O error in the
   swap, an interrupt in the repoint) leaves the store refusing writes and merges
   until a reopen finishes it: the next merge would delete ``merge/``.

A merge never makes data disappear: an input file in which the scanner meets an
unreadable record (a CRC mismatch, unreadable bytes, a dropped batch) is left out
whole. What was copied from it is rolled back, it stays in place (so its keys keep
their answers, CorruptRecordError for the damaged one), it counts as "outside" for
the tombstone rule of every later input, it is never offered to a merge again in
this session, and the report (``left_out``) and the log name it. ``repair`` is the
explicit action that removes unreadable records.

At open, a valid manifest means "finish step 4 on disk" (idempotent); no manifest
means the merge never completed and ``merge/`` is deleted. Readers never lock:
they retry a lookup whose file vanished, and an unlinked file stays readable
through any mapping a reader still holds.

This module is the merge's public face: ``Merges`` (one store's merge lock, pins
and auto-merge trigger), ``run_merge`` (the steps above in order, and what a
failure leaves) and ``MergeReport``.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ._datafile import data_name, map_file
from ._descriptors import ensure_descriptors
from ._files import FileTable
from ._io import fsync_dir
from ._keydir import Keydir
from ._merge_copy import Copy
from ._merge_swap import (
    MANIFEST,
    MERGE_DIR,
    read_manifest,
    recover_interrupted,
    repoint,
    swap_files,
    write_manifest,
)
from ._pins import Pins
from ._writer import Writer
from .errors import BitcaskError, MergeInProgressError, ReadOnlyError, StoreClosedError

__all__ = [
    "MERGE_DIR",
    "MergeReport",
    "Merges",
    "read_manifest",
    "recover_interrupted",
    "run_merge",
]

log = logging.getLogger("bitcask")

# The fold of small files. Every open, backup and merge seals the active file however
# little it holds, so a script opening the store once per run left a data file and a
# hint per run, none ever merged (no dead bytes): 2,000 runs of open, put, close made
# 4,000 files and 2,000 mappings for every later open to load and hold, and the runs
# averaged 53 ms each. A sealed file under max_file_size / SMALL_FILE_DIVISOR is
# small; once SMALL_FILES_FOLD of them stand, an auto-merge of just those (a subset
# merge: the copy and tombstone rules are every merge's) folds them into one.
# At open, small files holding at most FOLD_AT_OPEN_BYTES in all are folded in the
# opening thread before open returns: queued instead, such a script's close abandoned
# the fold every time (still 4,000 files after 2,000 runs).
SMALL_FILE_DIVISOR = 8
SMALL_FILES_FOLD = 16
FOLD_AT_OPEN_BYTES = 8 << 20
# take_lock's wait between two looks at lapsed pins (seconds)
_LOCK_POLL = 0.1


@dataclass(frozen=True)
class MergeReport:
    """What a merge did. Returned by ``Bitcask.merge()``."""

    inputs: tuple[int, ...]  # file ids merged (now deleted)
    outputs: tuple[int, ...]  # file ids written
    bytes_before: int  # total size of the inputs
    bytes_after: int  # total size of the outputs
    records_copied: int
    records_dropped: int  # overwritten, deleted or expired values, and dropped tombstones
    tombstones_kept: int
    expired_dropped: int
    seconds: float
    # (file id, why) of inputs left out whole because they hold unreadable records
    left_out: tuple[tuple[int, str], ...] = ()

    @property
    def reclaimed_bytes(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus ``reclaimed_bytes``."""
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        d["outputs"] = list(self.outputs)
        d["left_out"] = [list(x) for x in self.left_out]
        d["reclaimed_bytes"] = self.reclaimed_bytes
        return d

    def __str__(self) -> str:
        head = (
            f"merge: {len(self.inputs)} files -> {len(self.outputs)}, "
            f"{self.bytes_before} -> {self.bytes_after} bytes, {self.records_copied} copied, "
            f"{self.records_dropped} dropped ({self.expired_dropped} expired), "
            f"{self.tombstones_kept} tombstones kept, {self.seconds:.3f}s"
        )
        lines = [f"left out {data_name(fid)}: {why}" for fid, why in self.left_out]
        return "\n  ".join((head, *lines))


class Merges:
    """Merge coordination of one open store, and the parts a merge works on.

    ``lock`` lets one merge, backup or snapshot cut run at a time; ``pins`` are the
    files snapshots keep from merges; ``running`` keeps a second auto-merge from
    being queued. ``maybe_auto`` is the writer's after-rotation hook.
    """

    def __init__(self, keydir: Keydir, files: FileTable, writer: Writer) -> None:
        self.keydir = keydir
        self.files = files
        self.writer = writer
        self.lock = threading.Lock()
        self.pins = Pins()
        self.running = False
        self.count = 0  # merges swapped in since open
        self.last_error: str | None = None
        # set by Bitcask.stop_merges (a closing server): merges stop at their next record
        self.stopped = False
        # Dead bytes the last merge had to leave (kept tombstones, files it could not
        # take) and the files it could not take: the auto-merge trigger counts only the
        # dead bytes past these while those files stay the same.
        self.left_dead = 0
        self.left_out: frozenset[int] = frozenset()

    def maybe_auto(self) -> None:
        """Queue an auto-merge when dead bytes pass the trigger (caller holds the write lock)."""
        opts = self.writer.options
        if not opts.merge_trigger or self.running:
            return
        disk = sum(self.files.sizes().values())
        dead = disk - sum(self.keydir.live.values())
        if self.left_dead and self._excluded() == self.left_out:
            # Not what the last merge left: rerunning it would reclaim none of that.
            # A merge per rotation rewrote the whole store while a snapshot pinned old
            # files (their tombstones must stay), reclaiming nothing each time.
            dead -= self.left_dead
        if dead >= opts.merge_min_dead_bytes and dead >= opts.merge_trigger * disk:
            self.running = True  # reset by run_merge; keeps a second trigger out
            self.writer.tasks.put(self._auto)
        else:
            self.maybe_fold()

    def maybe_fold(self) -> None:
        """Queue a merge of just the small sealed files once SMALL_FILES_FOLD of them
        stand (caller holds the write lock), after each rotation; off, as every
        auto-merge, with ``merge_trigger=0``."""
        if self._fold_due():
            self.running = True
            self.writer.tasks.put(self._fold)

    def fold_at_open(self) -> None:
        """At open (the opening thread, no lock held): fold the small files now when
        they hold at most FOLD_AT_OPEN_BYTES, else queue the fold (``maybe_fold``). A
        failed fold is the background one's (``last_error``); the open goes on."""
        with self.writer.lock:
            try:
                self.writer.check_writable()  # a store refusing writes (a full disk) folds nothing
            except BitcaskError:
                return
            small = self._fold_due()
            if not small:
                return
            self.running = True
            if sum(self.files.sealed[fid] for fid in small) > FOLD_AT_OPEN_BYTES:
                self.writer.tasks.put(self._fold)  # the background worker's, as maybe_fold
                return
        self._fold()

    def _fold_due(self) -> list[int]:
        # The small files if a fold is due now, else [] (caller holds the write lock).
        if not self.writer.options.merge_trigger or self.running:
            return []
        small = self._small_files()
        return small if len(small) >= SMALL_FILES_FOLD else []

    def _small_files(self) -> list[int]:
        # The sealed files a fold takes (caller holds the write lock).
        limit = self.writer.options.max_file_size // SMALL_FILE_DIVISOR
        excluded = self._excluded()
        sealed = self.files.sealed
        return sorted(fid for fid, size in sealed.items() if size < limit and fid not in excluded)

    def _excluded(self) -> frozenset[int]:
        # The files a merge may not take now (caller holds the write lock).
        return frozenset(self.pins.pinned() | self.files.unloadable)

    def note_left(self, outputs: list[int]) -> None:
        """After a merge's swap (caller holds the write lock): remember the dead bytes
        it left, in its outputs and in the files it could not take."""
        excluded = self._excluded()
        sizes, live = self.files.sealed, self.keydir.live
        self.left_dead = sum(
            sizes[fid] - live.get(fid, 0) for fid in excluded.union(outputs) if fid in sizes
        )
        self.left_out = excluded

    def _fold(self) -> None:
        # The files are picked again under the write lock when the merge starts (a
        # merge or a snapshot may have taken some since the trigger).
        self._auto(self._small_files)

    def _auto(self, files: Callable[[], list[int]] | None = None) -> None:
        try:
            run_merge(self, None, files)
        except MergeInProgressError:
            pass
        except Exception as exc:  # a background merge must not kill the worker
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            # False, not the lock's state: an auto-merge that met a backup's lock used
            # to leave ``running`` set when its way out came after the backup's
            # lock release (the next backup already held the lock again), and no
            # auto-merge or fold was queued for the rest of the session. A trigger
            # during a backup now queues a merge that gives up at once (MergeInProgress).
            self.running = False

    def take_lock(self, timeout: float | None) -> bool:
        """Take ``lock`` within ``timeout`` seconds (0: only if free now; None: however
        long); False if it stayed taken. Pins lapse meanwhile (``Pins.expire``): a
        snapshot whose holder left it between pin_sealed and seal lets the lock go
        when its pin does, instead of keeping every merge and backup out for good."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.pins.expire()
            wait = _LOCK_POLL if deadline is None else min(_LOCK_POLL, deadline - time.monotonic())
            if self.lock.acquire(timeout=max(wait, 0)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def released(self) -> None:
        """A backup or snapshot let the store's files go: the background worker looks
        whether the small ones fold now. A backup holds every file it copies until it
        ends, so the fold of a store backed up often and written little waits for
        this, not a rotation. The caller never waits for the write lock (the server
        ends a snapshot on its event loop)."""
        if not self.writer.closing:
            self.writer.tasks.put(self._fold_if_due)

    def _fold_if_due(self) -> None:
        with self.writer.lock:
            if not self._fold_due():
                return
            self.running = True
        self._fold()


def crash_point(phase: str) -> None:
    """Called after each merge phase; tests replace it to simulate a crash there."""


class _SimulatedCrash(Exception):
    """Raised by a test's ``crash_point``: leave the files exactly as they are."""


class _Plan:
    """What step 1 decided, under the write lock (a plain class: a dataclass's
    generated methods were 3 exec() compilations at every import, for nothing)."""

    __slots__ = ("inputs", "maps", "oldest_outside", "out_ids", "sizes")

    def __init__(
        self,
        inputs: list[int],
        sizes: dict[int, int],
        maps: dict[int, mmap.mmap | None],
        out_ids: list[int],
        oldest_outside: int | None,
    ) -> None:
        self.inputs = inputs  # ids to merge, ascending
        self.sizes = sizes  # their sizes when sealed
        self.maps = maps  # their mappings
        self.out_ids = out_ids  # ids reserved for the outputs
        self.oldest_outside = oldest_outside  # the oldest file the merge does not take


def _plan(m: Merges, files: Iterable[int] | Callable[[], list[int]] | None) -> _Plan:
    # Step 1: seal, choose the inputs, reserve the output ids, map what is unmapped.
    # ``files`` may be a function, asked under the write lock (a fold's pick).
    writer, table = m.writer, m.files
    with writer.lock:
        writer.check_writable()
        sealed_before = [*sorted(table.sealed), table.active_id]
        if callable(files):
            files = files()
        inputs = sealed_before if files is None else sorted(set(files))
        pinned = m.pins.pinned()  # a snapshot's files are skipped, never deleted
        inputs = [fid for fid in inputs if fid not in table.unloadable and fid not in pinned]
        unknown = set(inputs) - set(sealed_before)
        if unknown:
            raise BitcaskError(f"no such data files: {sorted(unknown)}")
        first_out = table.next_id
        writer.rotate(reserve=len(inputs) + 1, requested=True)
        sizes, maps = table.hand_out(inputs)
        ensure_descriptors(len(table.entries) + len(inputs) + 1)  # + the outputs
    for fid in [fid for fid in inputs if maps[fid] is None]:
        # Served by pread: no descriptor was free to map it when it was sealed.
        # Map it now or leave it out of this merge; never read it as empty.
        try:
            maps[fid] = map_file(os.path.join(writer.path, data_name(fid)))
        except OSError:
            pass
        if maps[fid] is None:
            inputs.remove(fid)
    outside = sorted(set(sealed_before) - set(inputs))
    out_ids = list(range(first_out, first_out + len(inputs) + 1))
    return _Plan(inputs, sizes, maps, out_ids, outside[0] if outside else None)


def run_merge(
    m: Merges,
    progress: Callable[[int, int], None] | None,
    files: Iterable[int] | Callable[[], list[int]] | None = None,
) -> MergeReport:
    """Merge ``files`` (default: every file; a function: the ids it returns under the
    write lock) of a store; see the module docstring."""
    if not m.take_lock(0):
        raise MergeInProgressError("a merge or backup is already running")
    writer = m.writer
    started = time.monotonic()
    mdir = os.path.join(writer.path, MERGE_DIR)
    created = False
    copy: Copy | None = None
    try:
        m.running = True
        plan = _plan(m, files)
        # the start, so a merge that runs for minutes (or dies with the process) shows
        log.info(
            "merge started in %s: %d files, %d bytes",
            writer.path,
            len(plan.inputs),
            sum(plan.sizes[fid] for fid in plan.inputs),
        )
        crash_point("reserved")
        shutil.rmtree(mdir, ignore_errors=True)
        os.mkdir(mdir)
        created = True
        fsync_dir(writer.path)  # merge/ itself must survive a power cut with its manifest
        # Step 2.
        copy = Copy(mdir, plan.out_ids, writer.options.max_file_size)
        copy.run(
            plan.inputs,
            plan.maps,
            plan.sizes,
            plan.oldest_outside,
            kmap=m.keydir.map,
            now_ms=int(writer.now_ms()),
            writer=writer,
            halt=m,
            progress=progress,
        )
        inputs = plan.inputs
        if copy.left_out:
            dropped = {fid for fid, _ in copy.left_out}
            inputs = [fid for fid in inputs if fid not in dropped]
            with writer.lock:
                m.files.unloadable |= dropped  # never offered to a merge again
        # Step 3.
        outputs = copy.outputs
        for o in outputs:
            o.finish(mdir)
        fsync_dir(mdir)
        # Mapped now (a mapping survives the rename): past the manifest nothing may
        # fail for want of a descriptor, or the swap would be done on disk only.
        out_maps = [map_file(o.path) for o in outputs]
        out_ids = [o.fid for o in outputs]
        crash_point("copied")
        write_manifest(mdir, inputs, out_ids)
        crash_point("manifest")
        # Step 4.
        served = [(o.fid, o.size, mm) for o, mm in zip(outputs, out_maps, strict=True)]
        try:
            repoint(
                m.keydir,
                m.files,
                writer.lock,
                served,
                [o.journal for o in outputs],
                set(inputs),
                copy.expired,
            )
            with writer.lock:
                swap_files(writer.path, inputs, out_ids, after_rename=crash_point)
                m.files.install(served, inputs)
                for fid in inputs:
                    m.keydir.live.pop(fid, None)
                m.count += 1
                m.note_left(out_ids)
        except _SimulatedCrash:
            raise
        except BaseException as exc:
            # The manifest stands: only a reopen may finish this swap (step 4). An
            # interrupt here (Ctrl-C) left writes on, and the next merge deleted
            # merge/ under keys already pointed at its outputs.
            with writer.lock:
                writer.fail_until_restart("merge swap failed", exc)
            raise
        stats = copy.stats
        report = MergeReport(
            inputs=tuple(inputs),
            outputs=tuple(out_ids),
            bytes_before=sum(plan.sizes[fid] for fid in inputs),
            bytes_after=sum(o.size for o in outputs),
            records_copied=stats["copied"],
            records_dropped=stats["dropped"],
            tombstones_kept=stats["tombs"],
            expired_dropped=stats["expired"],
            seconds=time.monotonic() - started,
            left_out=tuple(copy.left_out),
        )
        # One line per merge, by hand or automatic (an automatic one reports nowhere else)
        log.info("%s in %s", str(report).replace("\n  ", "; "), writer.path)
        return report
    except _SimulatedCrash:
        raise
    except BaseException as exc:
        _log_failure(writer, exc, time.monotonic() - started)
        # Only a merge dir this call made, and only before its manifest exists
        # (after that, the next open finishes the swap).
        if created and not os.path.exists(os.path.join(mdir, MANIFEST)):
            shutil.rmtree(mdir, ignore_errors=True)
        raise
    finally:
        if copy is not None:
            copy.close()  # the outputs a failure left open
        m.running = False
        m.lock.release()


def _log_failure(writer: Writer, exc: BaseException, seconds: float) -> None:
    """One line for a merge that did not finish: abandoned for a close, or failed (at
    most one every 10 s: a client's MERGE on a full disk fails at once, each time)."""
    path = writer.path
    if isinstance(exc, StoreClosedError):
        log.info("merge abandoned in %s after %.3fs: %s", path, seconds, exc)
    elif isinstance(exc, ReadOnlyError):
        pass  # refused before it began; the fault itself is logged, refusals rate-limited
    elif isinstance(exc, Exception):
        writer.health.throttle.log(
            "merge-failed",
            logging.WARNING,
            "merge failed in %s after %.3fs: %s: %s",
            path,
            seconds,
            type(exc).__name__,
            exc,
        )
