"""What stops an open store's writes, what resumes them, and the threads beside them.

Strategy (invariants; the writer's own are in bitcask/_writer.py):
- A failed write or fsync takes the append back (``FileTable.cut``) and stops
  writes, as ``_health`` tells the two apart: after a failed write they resume by
  themselves once a probe shows the disk takes writes again (``_resume``, run by the
  probe thread); after a failed fsync, only after a restart. Out of descriptors is
  no disk fault: that write fails alone. Reads go on throughout.
- An exception that escapes a write after its bytes reached the file (an interrupt
  before or inside the publish) stops writes until a reopen (``_escaped``).
- The store's files gone from its directory stop writes until a reopen (``_gone``):
  seen by a failed write and, every ``WATCH_PERIOD`` while idle, by the background
  worker (``_watch``), never on the put path.
- A stop is the writer's ``_blocked`` (the error every write then raises, checked
  by ``check_writable`` under the lock) with its ``readonly_reason``.
- The background worker runs ``tasks`` (sealed files' hints, auto-merges) one at a
  time until a None; the syncer (sync="interval") fsyncs when dirty; ``threads``
  (worker, syncer, disk probe) are joined at close.
- ``WriteFaults`` is mixed into the Writer: ``_blocked`` is read on every write, so
  it stays the writer's own attribute. The state used is declared below.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

from ._datafile import FILE_HEADER_SIZE
from ._files import StoreRemoved
from ._health import WATCH_PERIOD, DiskHealth, is_transient
from .errors import BitcaskError, ReadOnlyError, StoreIOError
from .options import Options

if TYPE_CHECKING:
    from ._files import FileTable

__all__ = ["WriteFaults"]

log = logging.getLogger("bitcask")


class WriteFaults:
    """Failure handling, the removed-directory watch and the background threads; mixed
    into the Writer, whose state (declared below) they use."""

    path: str
    options: Options
    _lock: threading.RLock
    _files: FileTable
    _live: dict[int, int]
    _blocked: BitcaskError | None
    readonly: bool
    readonly_reason: str | None
    health: DiskHealth
    closing: bool
    stop: threading.Event
    tasks: SimpleQueue[Callable[[], None] | None]
    threads: list[threading.Thread]
    last_task_error: str | None
    sync_if_dirty: Callable[[], None]

    # ---------------------------------------------------------------- faults

    def _refuse(self) -> BitcaskError:
        # Caller holds _lock and found the store blocked: the error to raise.
        blocked = self._blocked
        assert blocked is not None
        if self.health.state != "ok":
            self.health.refused(blocked)
        return blocked

    def _escaped(self, fid: int, off: int, exc: BaseException) -> None:
        # Caller holds _lock: ``exc`` escaped a write whose bytes were to land at
        # ``off`` of file ``fid`` (or, after a rotation, at the new file's start).
        # If bytes are still there, it came after the append, before or inside the
        # publish (an interrupt: Ctrl-C, a signal handler's exception): the keydir,
        # the hint journal and the file may disagree (a scan of the file then read
        # another store than the hints), so writes stop until a reopen, which reads
        # the file; close() then leaves the active file for that scan, without a hint.
        files = self._files
        if files.offset == (off if files.active_id == fid else FILE_HEADER_SIZE):
            return  # nothing was appended, or _append took it back
        self.readonly_reason = (
            f"a write was interrupted ({type(exc).__name__}) after it reached the file, "
            "before it was published; reopen the store to resume writes"
        )
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        log.warning("write interrupted in %s: %s", self.path, self.readonly_reason)

    def _fail(self, exc: OSError, good_offset: int, *, fsync: bool = False) -> BitcaskError:
        # Caller holds _lock. Cut a partial append, then tell the disk fault apart
        # (see _health): out of descriptors fails this write alone; a failed write
        # refuses writes until a probe succeeds; a failed fsync, until restart; the
        # store's files gone from its directory, until a reopen.
        self._files.cut(good_offset)
        if exc.errno == errno.ENOENT:
            gone = exc.strerror if isinstance(exc, StoreRemoved) else self._files.gone()
            if gone:
                return self._gone(gone)
        reason = f"{type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
        if not fsync and is_transient(exc):
            self.health.short_of_descriptors(reason)
            return StoreIOError(exc.errno or 0, f"write failed, nothing was written: {reason}")
        if fsync:
            self.health.fsync_failed(reason)
            self.readonly_reason = f"fsync failed: {reason}; restart to resume writes"
        else:
            thread = self.health.write_failed(reason, self._resume)
            if thread is not None:
                self.threads.append(thread)
                thread.start()
            self.readonly_reason = f"write failed: {reason}; writes resume once the disk takes them"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        return StoreIOError(exc.errno or 0, f"write failed, store is now read-only: {reason}")

    def _gone(self, why: str) -> ReadOnlyError:
        # Caller holds _lock: the store's files left its directory (_health "removed").
        self.health.removed(why)
        self.readonly_reason = f"{why}; writes would vanish at close: restore it and reopen"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        return self._blocked

    def _watch(self) -> None:
        # The worker, idle for WATCH_PERIOD: writes stop once the files are gone.
        with self._lock:
            if self._blocked is None and self._files.has_active:
                why = self._files.gone()
                if why is not None:
                    self._gone(why)

    def fail_until_restart(self, what: str, exc: BaseException) -> None:
        """A merge failed after its manifest was written (caller holds the lock): the
        files on disk say "finish the merge", the file table says it never happened,
        and the keydir may point at outputs still in ``merge/``. Writing on would let
        a delete's tombstone be merged away while an output the table does not know
        still holds the value, or let the next merge delete ``merge/`` under the keys
        pointing there, so writes (and merges) stop until a reopen finishes the swap
        (bitcask/_merge_swap.py recover_interrupted). An OSError is a disk fault
        (``health``); anything else (an interrupt) stops writes alone, as an
        interrupted write does (``_escaped``)."""
        if isinstance(exc, OSError):
            reason = f"{what}: {type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
            self.health.fsync_failed(reason)
            self.readonly_reason = f"{reason}; restart to resume writes"
        else:
            self.readonly_reason = (
                f"merge interrupted ({type(exc).__name__}) after its manifest, before its "
                "swap; reopen the store to finish it and resume writes"
            )
            log.warning("merge interrupted in %s: %s", self.path, self.readonly_reason)
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    def fail_at_start(self, exc: OSError) -> None:
        """The active file could not be created at open (a full disk): serve reads;
        the probe creates it and resumes writes once space returns."""
        with self._lock:
            self._fail(exc, 0)
            self.readonly_reason = f"disk full at start: {self.readonly_reason}"
            self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    def _resume(self) -> None:
        """The probe thread saw the disk take a write: writable again (OSError if not)."""
        with self._lock:
            if self.closing or self.health.state != "write_failed":
                return
            files = self._files
            if not files.has_active:  # the full disk came at start: no active file yet
                files.create_active()
                self._live[files.active_id] = 0
            self._blocked = None
            self.readonly_reason = None
            self.health.healed()

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the background worker (and, for sync="interval", the syncer)."""
        worker = threading.Thread(target=self._work, name="bitcask-worker", daemon=True)
        worker.start()
        self.threads.append(worker)
        if self.options.sync == "interval":
            syncer = threading.Thread(target=self._sync_loop, name="bitcask-syncer", daemon=True)
            syncer.start()
            self.threads.append(syncer)

    def stop_threads(self) -> None:
        """Stop and join every background thread (at close; no write may follow)."""
        self.closing = True
        self.stop.set()
        self.tasks.put(None)
        for t in self.threads:
            t.join()

    def _work(self) -> None:
        # Runs background tasks (hint files, auto-merges) one at a time until close,
        # and checks that the store's files are still there when idle.
        while True:
            try:
                task = self.tasks.get(timeout=WATCH_PERIOD)
            except Empty:
                self._watch()
                continue
            if task is None:
                return
            try:
                task()
            except Exception as exc:  # a failed hint is rebuilt at the next open
                self.last_task_error = f"background task failed: {type(exc).__name__}: {exc}"

    def _sync_loop(self) -> None:
        # sync="interval": fsync the active file every sync_interval_ms when dirty.
        period = self.options.sync_interval_ms / 1000
        while not self.stop.wait(period):
            self.sync_if_dirty()

    def close_files(self, blocked: BitcaskError) -> None:
        """Refuse writes with ``blocked`` from now on; close the active file, sealing it
        and writing its hint (from the journal) when the store is healthy."""
        with self._lock:
            self._blocked = blocked
            if self.readonly:
                return
            healthy = self.readonly_reason is None
            sealed = self._files.close_active(seal=healthy)
            if sealed is None:
                self._live.pop(self._files.active_id, None)
            if healthy and self.options.sync == "never":
                # A clean stop fsyncs everything (docs/operations.md): under never the
                # sealed files and the names of new files were left to the kernel.
                try:
                    self._files.sync_sealed()
                except OSError as exc:
                    log.error("fsync of %s failed at close: %s", self.path, exc)
        if sealed is not None and self.options.hint_files:
            try:
                self._files.write_hint(*sealed)
            except OSError:
                pass

    def abandon_files(self, blocked: BitcaskError) -> None:
        """Refuse writes with ``blocked`` and drop the active file as a crash would (tests)."""
        self._blocked = blocked
        self._files.abandon_active()
