"""Snapshots: a consistent cut of a store, pinned so it can be copied out piece by piece.

Strategy (invariants):
1. ``pin_sealed`` waits for a running merge (it takes the merge lock, blocking) and
   pins every sealed file. The merge lock stays held until ``seal`` (or ``release``),
   so no merge can start between the two steps: a merge started there would rotate
   the active file and delete it, taking acknowledged writes out of reach.
2. ``seal`` (under the write lock) seals the active file when it holds records and
   pins it too, then lets merges go again. Every write applied before ``seal``
   returned is in a pinned, immutable file; later writes go to the new active file,
   which is not part of the snapshot. A batch is one write, so none is cut in half.
3. A merge that starts while files are pinned *skips* them (``Pins.pinned`` is read
   by ``run_merge``): it merges the rest, which the subset-merge rules already keep
   correct (tombstones are kept while an older file stays outside the merge). Pinned
   files are never deleted; the space they hold comes back at the first merge after
   ``release``.
4. ``prepare`` makes every pinned data file come with a valid hint (building the
   missing ones, under a private temp name so the background hint writer is never
   raced), and records name, size and CRC-32 of every file. Sealed files are
   immutable, so CRCs are cached by (name, size) across snapshots.
5. A pin has an owner (who to release it for, e.g. a connection) and an idle
   timeout, pushed back by every ``read_chunk``. An expired pin protects nothing:
   ``Pins.pinned`` drops it, and reading from it raises ``SnapshotNotFoundError``.
   Nothing stays pinned forever, even if its owner never calls ``release``.

Memory is bounded by one chunk per ``read_chunk`` call (plus one hint being built).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zlib import crc32

from ._datafile import FILE_HEADER_SIZE, ScanIssues, data_name, hint_name, scan
from ._hint import build_hint, read_hint, write_hint
from .errors import ReadOnlyError, SnapshotNotFoundError

if TYPE_CHECKING:
    from ._writer import Writer

__all__ = [
    "MAX_CHUNK",
    "Pins",
    "Snapshot",
    "SnapshotFile",
    "lookup",
    "pin_sealed",
    "prepare",
    "read_chunk",
    "release",
    "release_owner",
    "seal",
    "take_snapshot",
]

MAX_CHUNK = 1 << 20
"""The most bytes one ``read_chunk`` returns."""
DEFAULT_TIMEOUT = 60.0
_CRC_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """One file of a snapshot: its name in the data directory, size and CRC-32."""

    name: str
    size: int
    crc: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "crc": self.crc}


@dataclass(eq=False)
class Snapshot:
    """A pinned set of files. Built by ``take_snapshot`` (or the three steps)."""

    id: str
    owner: object
    timeout: float
    deadline: float
    fids: set[int] = field(default_factory=set)
    files: list[SnapshotFile] = field(default_factory=list)
    created: float = 0.0  # wall clock at the cut
    keys: int = 0  # live keys at the cut
    cut_file: int = 0  # the first file id *not* in the snapshot
    holds_merge_lock: bool = False
    sent: dict[str, int] = field(default_factory=dict)  # name -> highest byte read

    def manifest(self) -> dict[str, Any]:
        """What a copy of this snapshot is: written next to the files as backup.json."""
        return {
            "format": 1,
            "created": self.created,
            "keys": self.keys,
            "cut_file": self.cut_file,
            "files": [f.to_dict() for f in self.files],
        }

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def complete(self) -> bool:
        """Every byte of every file was read at least once."""
        return all(self.sent.get(f.name, 0) >= f.size for f in self.files)


class Pins:
    """The snapshots of one store (``db._pins``); thread-safe.

    Args:
        clock: monotonic seconds (tests pass a fake one to expire pins).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._snaps: dict[str, Snapshot] = {}
        self._crcs: dict[tuple[str, int], int] = {}
        self._ids = itertools.count(1)

    def new(self, owner: object, timeout: float) -> Snapshot:
        snap = Snapshot(
            id=f"{os.getpid()}-{next(self._ids)}-{os.urandom(4).hex()}",
            owner=owner,
            timeout=timeout,
            deadline=self.clock() + timeout,
        )
        with self._lock:
            self._snaps[snap.id] = snap
        return snap

    def pinned(self) -> set[int]:
        """The file ids no merge may take (expired pins dropped first)."""
        self.expire()
        with self._lock:
            out: set[int] = set()
            for snap in self._snaps.values():
                out |= snap.fids
            return out

    def get(self, snap_id: str) -> Snapshot:
        """The live snapshot ``snap_id``; its deadline is pushed back.

        Raises:
            SnapshotNotFoundError: unknown, released or expired.
        """
        self.expire()
        with self._lock:
            snap = self._snaps.get(snap_id)
            if snap is None:
                raise SnapshotNotFoundError(snap_id)
            snap.deadline = self.clock() + snap.timeout
            return snap

    def remove(self, snap_id: str) -> Snapshot | None:
        with self._lock:
            return self._snaps.pop(snap_id, None)

    def owned_by(self, owner: object) -> list[str]:
        with self._lock:
            return [s.id for s in self._snaps.values() if s.owner is owner]

    def expire(self) -> list[str]:
        """Drop the snapshots past their deadline; returns their ids."""
        now = self.clock()
        with self._lock:
            gone = [s for s in self._snaps.values() if s.deadline <= now]
            for snap in gone:
                del self._snaps[snap.id]
        return [s.id for s in gone]

    def __len__(self) -> int:
        with self._lock:
            return len(self._snaps)

    def cached_crc(self, name: str, size: int) -> int | None:
        with self._lock:
            return self._crcs.get((name, size))

    def remember_crc(self, name: str, size: int, crc: int) -> None:
        with self._lock:
            if len(self._crcs) > 100_000:
                self._crcs.clear()
            self._crcs[(name, size)] = crc


def pin_sealed(db: Writer, owner: object, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
    """Step 1: wait for a running merge, then pin every sealed file.

    The merge lock stays held until ``seal`` or ``release``.

    Raises:
        ReadOnlyError: the store was opened readonly (a snapshot seals the active file).
        ValueError: ``timeout`` is not > 0.
    """
    if db._readonly:
        raise ReadOnlyError("a snapshot needs a writer open (it seals the active file)")
    if not timeout > 0:
        raise ValueError(f"snapshot timeout must be > 0, got {timeout!r}")
    db._merge_lock.acquire()
    snap = db._pins.new(owner, timeout)
    snap.holds_merge_lock = True
    try:
        with db._lock:
            db._check_writable()
            snap.fids.update(db._sizes)
    except BaseException:
        release(db, snap.id)
        raise
    return snap


def seal(db: Writer, snap: Snapshot) -> None:
    """Step 2 (the cut): seal the active file if it holds records, pin it, let merges go.

    Call it where no write is in progress if "acknowledged before the reply" must
    hold (the server runs it on its writer thread, between two group commits).
    """
    try:
        with db._lock:
            db._check_writable()
            if db._offset > FILE_HEADER_SIZE:
                db._rotate()
            snap.fids.update(db._sizes)
            snap.created = time.time()
            snap.keys = len(db._kmap)
            snap.cut_file = db._active_id
    finally:
        if snap.holds_merge_lock:
            snap.holds_merge_lock = False
            db._merge_lock.release()
            _rearm_auto_merge(db)


def prepare(db: Writer, snap: Snapshot) -> None:
    """Step 3: a valid hint for every pinned data file; name, size and CRC of each file."""
    with db._lock:
        sizes = {fid: db._sizes[fid] for fid in snap.fids if fid in db._sizes}
        maps = {fid: db._maps[fid][0] for fid in sizes}
    files: list[SnapshotFile] = []
    for fid, size in sorted(sizes.items()):
        files.append(_describe(db, data_name(fid), size))
        if not db.options.hint_files:
            continue
        hpath = os.path.join(db.path, hint_name(fid))
        hsize = _valid_hint_size(db, fid, size, hpath)
        if hsize is None:
            mm = maps[fid]
            if mm is None:
                continue  # an unloadable file: copied as is, no hint to build
            blob = build_hint(fid, size, scan(mm, FILE_HEADER_SIZE, size, ScanIssues()))
            tmp = write_hint(f"{hpath}.{snap.id}.hint", blob, install=False)
            with db._lock:
                if fid in db._sizes:
                    os.replace(tmp, hpath)
                else:
                    os.unlink(tmp)
            db._pins.remember_crc(hint_name(fid), len(blob), crc32(blob))
            hsize = len(blob)
        files.append(_describe(db, hint_name(fid), hsize))
    snap.files = files


def take_snapshot(db: Writer, owner: object = None, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
    """Pin a consistent cut of ``db`` and describe its files (the three steps in a row).

    Args:
        db: an open writer store.
        owner: who holds the pins (``release_owner`` frees all of one owner's).
        timeout: idle seconds after which the pins lapse (each read pushes it back).

    Returns:
        The snapshot: ``files`` (name, size, crc) and ``manifest()``.

    Raises:
        ReadOnlyError: readonly store, or a store that refuses writes (disk error).

    Example:
        >>> snap = take_snapshot(db)                                   # doctest: +SKIP
        >>> first = read_chunk(db, snap.id, snap.files[0].name, 0, MAX_CHUNK)
        >>> release(db, snap.id)
    """
    snap = pin_sealed(db, owner, timeout)
    try:
        seal(db, snap)
        prepare(db, snap)
    except BaseException:
        release(db, snap.id)
        raise
    return snap


def read_chunk(db: Writer, snap_id: str, name: str, offset: int, length: int) -> bytes:
    """Up to ``length`` (at most MAX_CHUNK) bytes of file ``name`` of a snapshot.

    Returns b"" at or past the file's size. Pushes the snapshot's deadline back.

    Raises:
        SnapshotNotFoundError: the snapshot is unknown, released or expired.
        ValueError: ``name`` is not a file of the snapshot, or offset/length < 0.
    """
    snap = db._pins.get(snap_id)
    info = next((f for f in snap.files if f.name == name), None)
    if info is None:
        raise ValueError(f"{name!r} is not a file of snapshot {snap_id}")
    if offset < 0 or length < 0:
        raise ValueError("offset and length must be >= 0")
    n = min(length, MAX_CHUNK, info.size - offset)
    if n <= 0:
        return b""
    fd = os.open(os.path.join(db.path, name), os.O_RDONLY)
    try:
        data = os.pread(fd, n, offset)
    finally:
        os.close(fd)
    end = offset + len(data)
    if end > snap.sent.get(name, 0):
        snap.sent[name] = end
    return data


def lookup(db: Writer, snap_id: str) -> Snapshot:
    """The live snapshot ``snap_id`` of ``db`` (SnapshotNotFoundError if gone)."""
    return db._pins.get(snap_id)


def release(db: Writer, snap_id: str) -> Snapshot | None:
    """Unpin a snapshot (idempotent); returns it, or None if it was already gone."""
    snap = db._pins.remove(snap_id)
    if snap is not None and snap.holds_merge_lock:
        snap.holds_merge_lock = False
        db._merge_lock.release()
        _rearm_auto_merge(db)
    return snap


def release_owner(db: Writer, owner: object) -> int:
    """Unpin every snapshot of ``owner`` (a closed connection); returns how many."""
    ids = db._pins.owned_by(owner)
    for snap_id in ids:
        release(db, snap_id)
    return len(ids)


def _describe(db: Writer, name: str, size: int) -> SnapshotFile:
    crc = db._pins.cached_crc(name, size)
    if crc is None:
        crc = 0
        with open(os.path.join(db.path, name), "rb", buffering=0) as f:
            left = size
            while left > 0:
                block = f.read(min(_CRC_BLOCK, left))
                if not block:
                    raise OSError(f"{name} is shorter than its sealed size {size}")
                crc = crc32(block, crc)
                left -= len(block)
        db._pins.remember_crc(name, size, crc)
    return SnapshotFile(name, size, crc)


def _valid_hint_size(db: Writer, fid: int, size: int, hpath: str) -> int | None:
    """The size of a valid hint of file ``fid`` (``size`` bytes), or None."""
    try:
        hsize = os.stat(hpath).st_size
    except OSError:
        return None
    if db._pins.cached_crc(hint_name(fid), hsize) is not None:
        return hsize  # checked by an earlier snapshot; hints are immutable
    try:
        read_hint(hpath, fid, size)
    except (OSError, ValueError):
        return None
    return hsize


def _rearm_auto_merge(db: Writer) -> None:
    # An auto-merge that found the merge lock held by a snapshot left _merging set
    # (it reads the lock's state on the way out). At worst this lets one more
    # trigger through, whose merge finds the lock taken and gives up.
    db._merging = db._merge_lock.locked()
