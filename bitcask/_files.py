"""The file table: the data files of one open store, and the active file they end in.

Strategy (invariants):
- One owner. ``FileTable`` holds every per-file fact of an open store: the mapped
  files (``entries``), the sealed sizes (``sealed``), the ids (``active_id``,
  ``next_id``), the active file (``ActiveFile``: a shared mapping of preallocated
  space, bitcask/_active.py), its offset, and the hint entries of the active file
  as they are written (``journal``). Nothing else opens, appends to, fsyncs,
  rotates or seals a data file of an open store.
- The caller (the writer) holds the store's write lock around every mutating
  method here; readers take no lock: they read ``entries`` with one ``dict.get``.
  Entries are replaced, never mutated; mmaps are never closed while the store is
  open (dropping the last reference unmaps), so a reader mid-slice is always safe.
  The readers (``_Reader``) are closed the same way, by the last reference: a get
  mid-pread holds one.
  The active file's entry names its own writable mapping and is republished every
  ``REMAP_STEP`` appended bytes and whenever the file grew into a new mapping (one
  tuple, no mmap call); readers pread anything past it.
- Appends: ``append`` copies with one ``_io.write`` into the active file's mapping
  (the page cache: no user-space buffer, so a record survives SIGKILL once it
  returns; a one-record buffer in one copy, several records CRC last); ``sync``
  fsyncs; ``cut`` takes a failed append back (zeroes it again). These, ``rotate``,
  ``create_active`` and ``close_active`` are the only operations on the active file.
  ``rotate`` and ``close_active`` seal it: truncated to its records, ``OPEN_FILE``
  cleared.
- Every mapped file holds one descriptor, its mapping's (CPython's mmap keeps a
  dup; ``map_file`` closes the one it opened); the active file holds up to three:
  its mapping's, the ActiveFile's descriptor and the reader that preads past the
  published mapping. So a store needs about one descriptor per data file:
  ``ensure_descriptors`` raises the soft RLIMIT_NOFILE toward the hard limit when
  the files would not fit under it (at open, rotation and merge), as Redis and nginx
  raise theirs; where even the hard limit is too low, open fails with an error
  saying so (``out_of_descriptors``), not a bare EMFILE.
- A sealed file's hint is written by ``write_hint`` (the background worker, or
  close): from the journal when the file was written in this session, else by
  scanning it. ``install_hint`` renames it into place under the write lock only if
  the file is still in the table (a merge may have removed it), and only once the
  data file is fdatasynced (a hint must not outlive the records it points at).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import threading
from mmap import mmap
from typing import BinaryIO

from . import _io
from ._active import ActiveFile
from ._datafile import (
    FILE_HEADER_SIZE,
    ScanIssues,
    data_name,
    hint_name,
    map_file,
    scan,
)
from ._descriptors import ensure_descriptors
from ._hint import HintJournal, build_hint, write_hint
from ._io import fsync_dir
from ._keydir import FID_SHIFT, MAX_FILE_ID
from ._lock import LOCK_NAME
from .errors import ReadOnlyError

__all__ = [
    "REMAP_STEP",
    "FileEntry",
    "FileTable",
    "StoreRemoved",
]

log = logging.getLogger("bitcask")

# Republish the active file's entry after this many appended bytes (one tuple, no
# mmap call: the entry names the active file's own mapping); at most this much recent
# data is read with pread.
REMAP_STEP = 1 << 16

# (mapping or None for an empty/unreadable file, mapped length, reader for the
# active file's unmapped tail or None)
FileEntry = tuple[mmap | None, int, BinaryIO | None]


class _Reader(io.FileIO):
    """A data file's reader (get() preads the active file past its mapping), closed
    when its last reference goes, like the mappings: a get mid-pread holds one, so
    close() only drops them. Without a warning: a plain file dropped open is io's
    "ResourceWarning: unclosed file", shown for every data file of a closed store
    under ``-W error::ResourceWarning`` (pytest too)."""

    __slots__ = ()

    def __del__(self) -> None:
        self.close()


class StoreRemoved(OSError):
    """The store's files are no longer where a reopen finds them (``FileTable.gone``):
    what is written now would vanish at close. ``errno`` is ENOENT."""


def _identity(path: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(st_dev, st_ino) of ``path`` and of its ``LOCK``, None for one that is missing."""
    ids: list[tuple[int, int] | None] = []
    for p in (path, os.path.join(path, LOCK_NAME)):
        try:
            st = os.stat(p)
        except OSError:
            ids.append(None)
        else:
            ids.append((st.st_dev, st.st_ino))
    return ids[0], ids[1]


class FileTable:
    """The data files of an open store: sealed, mapped, and the active one.

    Args:
        path: the store directory.
        maps: file id -> mapping (None: empty or unreadable) of every loaded file.
        sizes: file id -> size of every loaded file (all sealed).
        max_file: the active file's target size (max_file_size): its space is
            reserved up to it in steps.
        sync_files: fsync a new file and the directory when it is created.
        hints: keep the active file's hint entries as they are written.
        lock: the store's write lock (``write_hint`` takes it to install a hint).
    """

    def __init__(
        self,
        path: str,
        maps: dict[int, mmap | None],
        sizes: dict[int, int],
        *,
        max_file: int,
        sync_files: bool,
        hints: bool,
        lock: threading.RLock,
    ) -> None:
        self.path = path
        self._max_file = max_file
        # what ``gone`` compares the directory and its LOCK with (a writer holds it)
        self._ids = _identity(path)
        self._sync_files = sync_files
        self._hints = hints
        self._lock = lock
        # file id -> FileEntry; never replaced (only mutated), so a bound .get stays valid
        self.entries: dict[int, FileEntry] = {
            fid: (mm, sizes[fid] if mm is not None else 0, None) for fid, mm in maps.items()
        }
        # sealed file id -> size
        self.sealed: dict[int, int] = dict(sizes)
        # files no merge may take: unreadable at open, or left out by a merge
        self.unloadable: set[int] = set()
        # sealed files sync_sealed fsynced (sync="never": the others may be behind)
        self._synced: set[int] = set()
        self.next_id = max(sizes, default=0) + 1
        # The active file (none until create_active; none at all when readonly).
        self.active_id = 0
        self.base = 0  # active_id << FID_SHIFT: the high bits of its keydir locations
        self.offset = 0  # where the next append lands
        self.journal: HintJournal | None = None
        self._active: ActiveFile | None = None
        self._reader: BinaryIO | None = None
        # The active file's name is not durable yet (created without sync_files): the
        # next ``sync`` fsyncs the directory too, or a forced sync under sync="never"
        # (write_batch(sync=True), the server's per-request sync) made the records
        # durable in a file a power cut could take away whole.
        self._unnamed = False
        # Republish the active file's entry once an append ends here: REMAP_STEP past
        # the last republish, or sooner at the active file's capacity, since only an
        # append reaching it grows the file into a new mapping. One compare per append
        # (bench/embedded.py put: 21,530 -> 21,210 instructions per put, callgrind,
        # PYTHONHASHSEED=0).
        self._remap_at = 0

    # ------------------------------------------------------------ active file

    @property
    def has_active(self) -> bool:
        """An active file is open for appends."""
        return self._active is not None

    def create_active(self, reserve: int = 0) -> None:
        """Create the next file (``reserve`` ids skipped) and make it the active one.

        The previous active file, if any, must have been sealed. Raises OSError
        (nothing changed, no id taken) or ReadOnlyError (ids exhausted).
        """
        fid = self.next_id + reserve
        self._active, self._reader = self._create(fid)
        self._start(fid)

    def append(self, buf: bytes, one: bool = False) -> None:
        """Append ``buf`` at ``offset`` with one ``_io.write``; ``offset`` moves past it.

        ``one``: ``buf`` is exactly one record (a put), copied in one step; otherwise
        it may hold several, copied CRC last (bitcask/_active.py, "Crash story").
        Raises OSError as the write does (then ``cut`` takes a partial append back).
        """
        active = self._active
        assert active is not None
        _io.write(active if one else active.records, buf)
        self.offset = end = self.offset + len(buf)
        if end >= self._remap_at:
            self._remap()  # also after a growth: the old mapping's descriptor goes

    def sync(self) -> None:
        """fsync the active file (OSError as fdatasync raises it; StoreRemoved when
        the store's directory or its LOCK is no longer the one opened: the fsync made
        the file durable nowhere a reopen looks)."""
        active = self._active
        assert active is not None
        active.sync()
        if self._unnamed:
            try:
                fsync_dir(self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                os.sync()  # at the descriptor limit: as sync_sealed (below)
            self._unnamed = False
        # The directory and its LOCK, by path: two stats of inodes no fsync touched.
        # An fstat of the active file right after its fdatasync waited on the sync on
        # ext4 (about 25 µs): sync="always" puts fell from 14-16k/s to 9.5-11.4k/s
        # (2,000 puts, five alternating runs; bench/embedded.py's durable table).
        # A deleted active file alone (rm DIR/*.data) is left to the writer's watch.
        if _identity(self.path) != self._ids:
            raise StoreRemoved(errno.ENOENT, self.gone() or "the store's directory was replaced")

    def gone(self) -> str | None:
        """Why writes would be lost at close, or None: the directory was removed or
        replaced (``rm -rf``, a volume mounted over it), or the active file was
        unlinked (``rm DIR/*``). A reopen would not find what the writer appends to
        unlinked files, yet appends and fsyncs into them succeed. Two stats and an
        fstat (about 6 µs): the writer asks when a rotation cannot create its file
        and once every ``WATCH_PERIOD`` (bitcask/_health.py), never per put; each
        ``sync`` checks the active file's link count."""
        ids = _identity(self.path)
        active = self._active
        if ids[0] is None:
            what = "nothing is there now"
        elif ids[0] != self._ids[0]:
            what = "another directory is there now: made again, or a volume mounted over it"
        elif ids[1] != self._ids[1]:
            what = "its files were deleted"
        elif active is not None and active.fd >= 0 and os.fstat(active.fd).st_nlink == 0:
            what = f"its active data file {data_name(self.active_id)} was deleted"
        else:
            return None
        return (
            f"the data directory {self.path} was removed or replaced while the store is "
            f"open ({what})"
        )

    def sync_sealed(self) -> None:
        """fsync what a rotation under sync="never" left unsynced: the sealed files not
        fsynced by an earlier call (all of them at the first call of a session: the
        last session may have left them so) and the directory. OSError as raised.

        Opening a file to fsync it needs a descriptor: at the descriptor limit (EMFILE,
        ENFILE) it falls back to ``os.sync()``, which needs none and returns once every
        file of the system is written back, so a store at its limit neither loses the
        promise nor turns read-only (the writer takes a failed sync for a failed fsync).
        """
        synced = self._synced
        synced.intersection_update(self.sealed)  # merged away: ids are never reused
        try:
            for fid in [fid for fid in self.sealed if fid not in synced]:
                fd = os.open(os.path.join(self.path, data_name(fid)), os.O_RDONLY)
                try:
                    _io.fsync(fd)
                finally:
                    os.close(fd)
                synced.add(fid)
            fsync_dir(self.path)
            self._unnamed = False
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            os.sync()
            synced.update(self.sealed)

    def cut(self, good_offset: int) -> None:
        """Take back everything appended after ``good_offset`` (zeroed again)."""
        self.offset = good_offset
        if self._active is not None:
            self._active.cut(good_offset)

    def rotate(self, reserve: int = 0) -> tuple[int, HintJournal | None]:
        """Seal the active file and start the next one (``reserve`` ids skipped).

        Returns the sealed file's id and its hint journal. Raises OSError with
        nothing changed: creating the new file reserves its first space, so a full
        disk fails here, before the old file is sealed.
        """
        old_id, size, journal = self.active_id, self.offset, self.journal
        old, old_reader = self._active, self._reader
        assert old is not None
        new_id = self.next_id + reserve
        new, reader = self._active, self._reader = self._create(new_id)
        # The new file exists: switch to it with plain stores only (no call, so no
        # interrupt - Ctrl-C, a signal handler's exception - can land in between),
        # the old file served by pread until it is mapped. Each later step leaves a
        # usable table if an interrupt stops it: a rotation left half done appended
        # to the new file under the old file's id (unreadable) and made the next
        # rotation fail on the existing new file, the store read-only until reopen.
        self.sealed[old_id] = size
        self.entries[old_id] = (None, 0, old_reader)
        self.journal = None  # until the new one exists (without one, a scan builds its hint)
        self.next_id = new_id + 1
        self.active_id = new_id
        self.base = new_id << FID_SHIFT
        self.offset = FILE_HEADER_SIZE
        self.entries[new_id] = (new.mm, FILE_HEADER_SIZE, reader)
        self._remap_at = FILE_HEADER_SIZE  # republished at the first append
        # Only now seal the old one (a crash in between leaves two flagged files,
        # whose zero tails recovery trims).
        old.seal(self._sync_files)
        self.journal = HintJournal() if self._hints else None
        try:
            self.entries[old_id] = (
                map_file(os.path.join(self.path, data_name(old_id))),
                size,
                None,
            )
        except OSError:  # out of descriptors: the sealed file stays served with pread
            pass
        return old_id, journal

    def close_active(self, *, seal: bool) -> tuple[int, HintJournal | None] | None:
        """Close the active file (at close): fsync it, seal it (truncated to its
        records, ``OPEN_FILE`` cleared), drop it if it holds no record.

        With ``seal`` a file holding records joins the sealed files and its id and
        journal are returned (for its hint); otherwise it stays out of the sealed
        files (no hint: the next open scans it).
        """
        active = self._active
        if active is None:
            return None
        fid, size, journal = self.active_id, self.offset, self.journal
        try:
            active.sync()
        except OSError as exc:  # the records are in the page cache: a crash keeps them
            log.error("fsync of %s failed at close: %s", data_name(fid), exc)
        active.seal(durable=True)  # a clean stop fsyncs everything, whatever the policy
        self._active = None
        self.journal = None
        if not seal:
            return None
        # From here on the records are safe in a sealed file: nothing may fail the
        # close (an OSError escaping here left the store locked for the rest of the
        # process, as close() never got to release it).
        if size == FILE_HEADER_SIZE:
            self.entries.pop(fid, None)
            try:
                os.unlink(os.path.join(self.path, data_name(fid)))
            except OSError as exc:  # the next writer open drops an empty file
                log.warning("cannot remove the empty data file %s: %s", data_name(fid), exc)
            return None
        self.sealed[fid] = size
        try:
            mm = map_file(os.path.join(self.path, data_name(fid)))
        except OSError as exc:  # no mapping, no hint: the next open scans the file
            log.warning("no hint for %s at close: %s", data_name(fid), exc)
            self.entries[fid] = (None, 0, None)
            return None
        self.entries[fid] = (mm, size, None)
        return fid, journal

    def abandon_active(self) -> None:
        """Close the active file as a crash would leave it: no fsync, no seal (tests)."""
        if self._active is not None:
            self._active.close()  # left flagged, its zero tail unsealed
            self._active = None
        self.journal = None

    def _create(self, fid: int) -> tuple[ActiveFile, BinaryIO]:
        # Create file ``fid`` (flagged OPEN_FILE, its first space reserved and mapped);
        # return it and a reader. On failure nothing is left behind.
        if fid > MAX_FILE_ID:
            # A ReadOnlyError (READ_ONLY to clients, not INTERNAL): writes that fit the
            # active file still go on; a backup keeps the ids (docs/format.md, limits).
            raise ReadOnlyError(
                f"file ids exhausted ({MAX_FILE_ID} files over the store's life): no new "
                "data file can be created, for writes or merges; copy the keys into a new store"
            )
        ensure_descriptors(len(self.entries) + 1)
        path = os.path.join(self.path, data_name(fid))
        active = ActiveFile.create(path, fid, self._max_file, self._sync_files)
        try:
            if self._sync_files:
                fsync_dir(self.path)
            reader = _Reader(path, "rb")
        except BaseException:
            active.discard()  # a retry creates it again (O_EXCL)
            raise
        self._unnamed = not self._sync_files
        return active, reader

    def _start(self, fid: int) -> None:
        self.next_id = fid + 1
        self.active_id = fid
        self.base = fid << FID_SHIFT
        self.offset = FILE_HEADER_SIZE
        self.journal = HintJournal() if self._hints else None
        self._remap()

    def _remap(self) -> None:
        reader, active = self._reader, self._active
        assert reader is not None and active is not None
        self.entries[self.active_id] = (active.mm, self.offset, reader)
        self._remap_at = min(self.offset + REMAP_STEP, active.capacity)
        if self.journal is not None:  # superseded entries go at the same pace
            self.journal.compact_tail()

    # ------------------------------------------------------------ sealed files

    def sizes(self) -> dict[int, int]:
        """Every file's size, the active one's included (a copy)."""
        sizes = dict(self.sealed)
        if self._active is not None:
            sizes[self.active_id] = self.offset
        return sizes

    def hand_out(self, fids: list[int]) -> tuple[dict[int, int], dict[int, mmap | None]]:
        """Sizes and mappings of sealed files ``fids`` (to merge or copy them)."""
        return (
            {fid: self.sealed[fid] for fid in fids},
            {fid: self.entries[fid][0] for fid in fids},
        )

    def serve(self, outputs: list[tuple[int, int, mmap | None]]) -> None:
        """Let readers reach a merge's ``outputs`` (id, size, mapping) before its swap,
        while the keydir is pointed at them; ``install`` then makes them sealed files."""
        for fid, size, mm in outputs:
            self.entries[fid] = (mm, size, None)

    def install(self, outputs: list[tuple[int, int, mmap | None]], inputs: list[int]) -> None:
        """A merge's swap: serve ``outputs`` (id, size, mapping made before the swap),
        already in place on disk, and drop ``inputs`` (already unlinked)."""
        for fid, size, mm in outputs:
            self.entries[fid] = (mm, size, None)
            self.sealed[fid] = size
        for fid in inputs:
            self.entries.pop(fid, None)
            self.sealed.pop(fid, None)

    def write_hint(self, fid: int, journal: HintJournal | None = None) -> None:
        """Build and install the hint of sealed file ``fid`` (from ``journal`` if given)."""
        entry = self.entries.get(fid)
        size = self.sealed.get(fid)
        if entry is None or size is None or entry[0] is None:
            return
        if journal is not None and journal.intact:
            blob = journal.build(fid, size)
        else:
            blob = build_hint(fid, size, scan(entry[0], FILE_HEADER_SIZE, size, ScanIssues()))
        self.install_hint(
            fid, write_hint(os.path.join(self.path, hint_name(fid)), blob, install=False)
        )

    def install_hint(self, fid: int, tmp: str) -> None:
        """Rename the hint ``tmp`` (written and fsynced) of sealed file ``fid`` into
        place, if the file is still in the table (a merge may have removed it).

        The data file is fdatasynced first: a hint that survives a power cut must not
        vouch for records that did not (sync="never" never synced them; the sealed
        header is not synced at rotation). A hint that does not survive is rebuilt.
        """
        try:
            fd = os.open(os.path.join(self.path, data_name(fid)), os.O_RDONLY)
        except FileNotFoundError:  # merged away meanwhile
            os.unlink(tmp)
            return
        try:
            _io.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if fid in self.sealed:
                os.replace(tmp, os.path.join(self.path, hint_name(fid)))
            else:
                os.unlink(tmp)

    def close(self) -> None:
        """Forget every mapping (at close; readers then fail as the store is closed)."""
        self.entries.clear()
        self._reader = None
