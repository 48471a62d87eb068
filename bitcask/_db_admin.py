"""Bitcask's whole-store methods: merge and backup, and the state a monitor reads
(stats, disk_health, data_files).

Strategy / invariants:
- ``AdminMethods`` is a mixin of methods only. ``Bitcask`` (bitcask/db.py) inherits
  it and supplies the parts declared below; the one attribute only these methods
  use, ``_kbytes`` (stats()'s keydir size estimate), Bitcask starts at (0, 0) and
  ``_keydir_bytes`` updates.
- merge() and backup() run in the calling thread through the merge coordination
  (``merges``, bitcask/merge.py), whose lock lets one of them run at a time; in a
  child of fork() they are refused before they start (``_check_not_inherited``,
  bitcask/_db_lifecycle.py).
- stats() is O(files) plus an O(1) amortized keydir estimate (``_keydir_bytes``):
  a metrics scrape may call it every second on a store of millions of keys.
- Nothing here changes the keydir or the files itself: merge and backup own their
  work (bitcask/merge.py, bitcask/backup.py), the writer owns the disk state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._files import FileTable
from ._health import DiskHealth
from ._keydir import Keydir
from ._recovery import RecoveryReport
from ._writer import Writer
from .merge import MergeReport, Merges, run_merge
from .options import Options

__all__ = ["AdminMethods"]


class AdminMethods:
    """The whole-store methods of ``Bitcask``; see bitcask/db.py for the class itself."""

    # No ``__slots__ = ()``: stats() updates ``_kbytes``, which Bitcask holds.
    # Supplied by Bitcask (this mixin declares them, it sets none but ``_kbytes``).
    path: str
    options: Options
    recovery: RecoveryReport
    files: FileTable
    writer: Writer
    merges: Merges
    _kd: Keydir
    _kmap: dict[bytes, int]
    _health: DiskHealth
    _readonly: bool
    _kbytes: tuple[int, int]  # (keys, keydir bytes) of the last estimate

    if TYPE_CHECKING:

        def __len__(self) -> int: ...

        def _check_not_inherited(self) -> None: ...

        @property
        def readonly_reason(self) -> str | None: ...

    def merge(self, progress: Callable[[int, int], None] | None = None) -> MergeReport:
        """Compact the store: rewrite live records, drop overwritten/deleted/expired ones.

        Runs in the calling thread (use a worker thread); reads and writes go on
        meanwhile, and the result is swapped in under the write lock. Crash-safe at
        every step. ``progress(done_bytes, total_bytes)`` is called as it goes.

        Returns:
            A MergeReport.

        Raises:
            MergeInProgressError: a merge or a backup is already running.
            ReadOnlyError, StoreClosedError: the store cannot write.
            TypeError: ``progress`` is not callable (before anything starts).

        Example:
            >>> report = db.merge(); report.reclaimed_bytes >= 0
            True
        """
        if progress is not None and not callable(progress):
            # It failed at its first call, once the merge had begun, with an ERROR
            # line "merge failed in DIR ...: 'int' object is not callable".
            raise TypeError(f"progress must be callable or None, not {progress!r}")
        self._check_not_inherited()
        return run_merge(self.merges, progress)

    def stop_merges(self) -> None:
        """Abandon the running merge, and any later one, at its next record: for a
        process about to close the store (bitcask-server's graceful stop), which
        would otherwise wait for a whole merge. The merge raises StoreClosedError and
        its output is deleted (a merge already past its completion marker finishes
        its short swap instead); the store, reads and writes are unaffected. Any thread.

        Example:
            >>> db.stop_merges(); db.put(b"k", b"v")
        """
        self.merges.stopped = True

    def _merge_files(self, files: Iterable[int]) -> MergeReport:
        """Merge only ``files`` (tests of subset merges)."""
        return run_merge(self.merges, None, files)

    def backup(self, dest: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
        """Write a consistent copy of the store to ``dest`` (new or empty directory).

        Seals the active file under the write lock, pauses merges, and copies every
        sealed data file and hint, fsynced; writes go on meanwhile (into the new
        active file, not part of the copy). The copy opens as a store. Any thread.

        Raises:
            FileExistsError: ``dest`` exists and is not empty.
            ReadOnlyError: the store is readonly (its files may be merged under it).

        Example:
            >>> db.backup("/backups/2024-06-01")
        """
        self._check_not_inherited()
        from .backup import run_backup  # on first use: shutil and the copy code

        run_backup(self.merges, os.fsdecode(dest))  # bytes as bitcask.open takes them

    def data_files(self) -> int:
        """How many data files the store has open now, the active one included; O(1).

        Each holds a descriptor (its mapping) for as long as the store is open, so a
        server fits its connections below RLIMIT_NOFILE minus these. Any thread.

        Example:
            >>> db.data_files() >= 1
            True
        """
        return len(self.files.entries)

    def disk_health(self) -> dict[str, Any]:
        """The disk state as writes saw it; cheap, any thread (also ``stats()["disk"]``).

        Keys: state ("ok" | "write_failed" | "fsync_failed" | "removed"), reason, since,
        last_attempt (wall-clock seconds or None), attempts (probes so far) and seconds
        (how long the fault has lasted, by the monotonic clock; None when ok). After a
        failed write a probe retries with back-off and writes resume by themselves;
        after a failed fsync only reopening the store resumes them.

        Example:
            >>> db.disk_health()["state"]
            'ok'
        """
        return self._health.snapshot()

    def stats(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the store's state. Any thread.

        Keys: path, keys, keydir_bytes (sys.getsizeof estimate), keydir_bytes_per_key,
        live_bytes, dead_bytes, disk_bytes, files [{id, size, live_bytes,
        dead_bytes}], active_file, sync, readonly, readonly_reason, disk {state: "ok" |
        "write_failed" | "fsync_failed" | "removed", reason, since, last_attempt (wall-clock
        seconds), attempts, seconds (the fault's duration, monotonic); after a failed
        write a probe retries with back-off and writes resume by themselves; after a
        failed fsync, only a restart resumes them)}, merging, merges, last_merge_error,
        recovery.

        Example:
            >>> db.stats()["keys"]
            2
        """
        sizes = self.files.sizes()
        live = self._kd.live
        files = []
        for fid in sorted(sizes):
            lv = live.get(fid, 0)
            files.append(
                {"id": fid, "size": sizes[fid], "live_bytes": lv, "dead_bytes": sizes[fid] - lv}
            )
        disk = sum(sizes.values())
        live_total = sum(f["live_bytes"] for f in files)
        n = len(self)
        kbytes = self._keydir_bytes()
        return {
            "path": self.path,
            "keys": n,
            "keydir_bytes": kbytes,
            "keydir_bytes_per_key": round(kbytes / len(self._kmap), 1) if self._kmap else 0.0,
            "live_bytes": live_total,
            "dead_bytes": disk - live_total,
            "disk_bytes": disk,
            "files": files,
            "active_file": None if self._readonly else self.files.active_id,
            "sync": self.options.sync,
            "readonly": self._readonly or self.readonly_reason is not None,
            "readonly_reason": self.readonly_reason,
            "disk": self.disk_health(),
            "merging": self.merges.lock.locked(),
            "merges": self.merges.count,
            "last_merge_error": self.merges.last_error or self.writer.last_task_error,
            "recovery": self.recovery.to_dict(),
        }

    def _keydir_bytes(self) -> int:
        # Keydir.estimate_bytes walks every key (30 ms at 1,000,000): measured again
        # once the key count moved by an eighth since, else scaled by it, so stats()
        # (every metrics scrape) stays O(1) amortized. It is an estimate either way.
        n = len(self._kmap)
        at, kbytes = self._kbytes
        if not at or abs(n - at) * 8 > at:
            kbytes = self._kd.estimate_bytes()
            self._kbytes = (n, kbytes) if n else (0, 0)
            return kbytes
        return kbytes * n // at
