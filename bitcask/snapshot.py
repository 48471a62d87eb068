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
   immutable, so CRCs are cached by (name, size) across snapshots, for the files
   the store holds when a snapshot is prepared (a merged-away file's are dropped).
5. A pin has an owner (who to release it for, e.g. a connection) and an idle
   timeout, pushed back by every ``read_chunk``. An expired pin protects nothing:
   ``Pins.pinned`` drops it, and reading from it raises ``SnapshotNotFoundError``.
   Nothing stays pinned forever, even if its owner never calls ``release``; nor
   does the merge lock of a step 1 never followed by ``seal`` or ``release``: it
   lapses with the pin (merges, backups and snapshots used to wait for it forever).
6. ``prepare`` (a CRC pass over every file not seen before, hints built: minutes for
   a large store) is abandoned by ``Bitcask.stop_merges`` as a merge is, between two
   blocks: it raises StoreClosedError, a hint being built is not installed, and the
   caller releases the pins (a graceful stop does not wait for it).

Memory is bounded by one chunk per ``read_chunk`` call (plus one hint being built).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ._datafile import FILE_HEADER_SIZE, ScanIssues, data_name, hint_name, scan
from ._hint import build_hint, read_hint, write_hint
from ._pins import Pins, Snapshot, SnapshotFile
from ._record import crc32
from .errors import ReadOnlyError, StoreClosedError

if TYPE_CHECKING:
    from .db import Bitcask

__all__ = [
    "MAX_CHUNK",
    "Pins",
    "Snapshot",
    "SnapshotFile",
    "held_by",
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


def pin_sealed(db: Bitcask, owner: object, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
    """Step 1: wait for a running merge, then pin every sealed file.

    The merge lock stays held until ``seal`` or ``release``.

    Raises:
        ReadOnlyError: the store was opened readonly (a snapshot seals the active file).
        ValueError: ``timeout`` is not > 0.
    """
    writer, merges = db.writer, db.merges
    if writer.readonly:
        raise ReadOnlyError("a snapshot needs a writer open (it seals the active file)")
    if not timeout > 0:
        raise ValueError(f"snapshot timeout must be > 0, got {timeout!r}")
    merges.take_lock(None)
    snap = merges.pins.new(owner, timeout, merges.lock)
    try:
        with writer.lock:
            writer.check_writable()
            snap.fids.update(db.files.sealed)
    except BaseException:
        release(db, snap.id)
        raise
    return snap


def seal(db: Bitcask, snap: Snapshot) -> None:
    """Step 2 (the cut): seal the active file if it holds records, pin it, let merges go.

    Call it where no write is in progress if "acknowledged before the reply" must
    hold (the server runs it on its writer thread, between two group commits).
    """
    writer, files = db.writer, db.files
    try:
        with writer.lock:
            writer.check_writable()
            if files.offset > FILE_HEADER_SIZE:
                writer.rotate(requested=True)
            snap.fids.update(files.sealed)
            snap.created = time.time()
            snap.keys = len(db.keydir.map)
            snap.cut_file = files.active_id
    finally:
        db.merges.pins.let_go(snap)


def prepare(db: Bitcask, snap: Snapshot) -> None:
    """Step 3: a valid hint for every pinned data file; name, size and CRC of each file."""
    files_ = db.files
    with db.writer.lock:
        sizes, maps = files_.hand_out([fid for fid in snap.fids if fid in files_.sealed])
        held = list(files_.sealed)
    db.merges.pins.keep_crcs({name for fid in held for name in (data_name(fid), hint_name(fid))})
    files: list[SnapshotFile] = []
    for fid, size in sorted(sizes.items()):
        _check_not_stopped(db)
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
            _check_not_stopped(db)
            files_.install_hint(fid, write_hint(f"{hpath}.{snap.id}.hint", blob, install=False))
            db.merges.pins.remember_crc(hint_name(fid), len(blob), crc32(blob))
            hsize = len(blob)
        files.append(_describe(db, hint_name(fid), hsize))
    snap.files = files


def take_snapshot(db: Bitcask, owner: object = None, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
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


def read_chunk(db: Bitcask, snap_id: str, name: str, offset: int, length: int) -> bytes:
    """Up to ``length`` (at most MAX_CHUNK) bytes of file ``name`` of a snapshot.

    Returns b"" at or past the file's size. Pushes the snapshot's deadline back.

    Raises:
        SnapshotNotFoundError: the snapshot is unknown, released or expired.
        ValueError: ``name`` is not a file of the snapshot, or offset/length < 0.
    """
    snap = db.merges.pins.get(snap_id)
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


def lookup(db: Bitcask, snap_id: str) -> Snapshot:
    """The live snapshot ``snap_id`` of ``db`` (SnapshotNotFoundError if gone)."""
    return db.merges.pins.get(snap_id)


def release(db: Bitcask, snap_id: str) -> Snapshot | None:
    """Unpin a snapshot (idempotent); returns it, or None if it was already gone."""
    snap = db.merges.pins.remove(snap_id)
    if snap is not None:
        db.merges.pins.let_go(snap)
        db.merges.released()
    return snap


def held_by(db: Bitcask, owner: object) -> int:
    """How many live snapshots ``owner`` holds (lapsed ones dropped first)."""
    pins = db.merges.pins
    pins.expire()
    return len(pins.owned_by(owner))


def release_owner(db: Bitcask, owner: object) -> int:
    """Unpin every snapshot of ``owner`` (a closed connection); returns how many."""
    ids = db.merges.pins.owned_by(owner)
    for snap_id in ids:
        release(db, snap_id)
    return len(ids)


def _describe(db: Bitcask, name: str, size: int) -> SnapshotFile:
    crc = db.merges.pins.cached_crc(name, size)
    if crc is None:
        crc = 0
        with open(os.path.join(db.path, name), "rb", buffering=0) as f:
            left = size
            while left > 0:
                _check_not_stopped(db)
                block = f.read(min(_CRC_BLOCK, left))
                if not block:
                    raise OSError(f"{name} is shorter than its sealed size {size}")
                crc = crc32(block, crc)
                left -= len(block)
        db.merges.pins.remember_crc(name, size, crc)
    return SnapshotFile(name, size, crc)


def _check_not_stopped(db: Bitcask) -> None:
    if db.merges.stopped:  # Bitcask.stop_merges: the process is closing the store
        raise StoreClosedError("snapshot abandoned: the store is closing")


def _valid_hint_size(db: Bitcask, fid: int, size: int, hpath: str) -> int | None:
    """The size of a valid hint of file ``fid`` (``size`` bytes), or None."""
    try:
        hsize = os.stat(hpath).st_size
    except OSError:
        return None
    if db.merges.pins.cached_crc(hint_name(fid), hsize) is not None:
        return hsize  # checked by an earlier snapshot; hints are immutable
    try:
        read_hint(hpath, fid, size)
    except (OSError, ValueError):
        return None
    return hsize
