"""Pins: the snapshots of one open store, and the files they keep from merges.

Strategy: a snapshot (``bitcask/snapshot.py``) pins a set of file ids; ``pinned``
is what a merge reads to skip them. Thread-safe (one small lock). Pins lapse after
an idle timeout, so nothing stays pinned forever: a lapsing snapshot that still
holds the store's merge lock (taken by its first step, never sealed nor released:
its holder gave up on it) lets it go (``let_go``), and whoever waits for that lock
expires pins while it waits (``Merges.take_lock``).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import SnapshotNotFoundError

__all__ = ["Pins", "Snapshot", "SnapshotFile"]

log = logging.getLogger("bitcask")


# SnapshotFile and Snapshot are plain classes (read by attribute, never compared or
# printed): as dataclasses their generated methods were 8 exec() compilations at
# import, ~6M instructions of a bitcask-server start (callgrind).


class SnapshotFile:
    """One file of a snapshot: its name in the data directory, size and CRC-32."""

    __slots__ = ("crc", "name", "size")

    def __init__(self, name: str, size: int, crc: int) -> None:
        self.name = name
        self.size = size
        self.crc = crc

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "crc": self.crc}


class Snapshot:
    """A pinned set of files. Built by ``take_snapshot`` (or the three steps)."""

    def __init__(
        self,
        id: str,
        owner: object,
        timeout: float,
        deadline: float,
        merge_lock: threading.Lock | None = None,  # held from pin_sealed to seal (let_go)
    ) -> None:
        self.id = id
        self.owner = owner
        self.timeout = timeout
        self.deadline = deadline
        self.merge_lock = merge_lock
        self.fids: set[int] = set()
        self.files: list[SnapshotFile] = []
        self.created = 0.0  # wall clock at the cut
        self.keys = 0  # live keys at the cut
        self.cut_file = 0  # the first file id *not* in the snapshot
        self.sent: dict[str, int] = {}  # name -> highest byte read

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

    def new(
        self, owner: object, timeout: float, merge_lock: threading.Lock | None = None
    ) -> Snapshot:
        """A new snapshot; ``merge_lock``: the merge lock its caller holds for it."""
        snap = Snapshot(
            id=f"{os.getpid()}-{next(self._ids)}-{os.urandom(4).hex()}",
            owner=owner,
            timeout=timeout,
            deadline=self.clock() + timeout,
            merge_lock=merge_lock,
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
        for snap in gone:
            self.let_go(snap)  # merges may run again (step 1 left unfinished)
            # a backup that stopped reading: its files may be merged away now, and its
            # next read fails; without this line nothing said why
            log.warning(
                "snapshot %s lapsed: no read for %g s, its files are no longer kept from "
                "merges and reading it now fails",
                snap.id,
                snap.timeout,
            )
        return [s.id for s in gone]

    def let_go(self, snap: Snapshot) -> None:
        """Release the merge lock ``snap`` holds, if it still does: once, whichever of
        seal, release and a lapse comes first (they may race)."""
        with self._lock:
            lock, snap.merge_lock = snap.merge_lock, None
        if lock is not None:
            lock.release()

    def let_go_all(self) -> None:
        """Release the merge lock any snapshot holds (the store is closing)."""
        with self._lock:
            snaps = list(self._snaps.values())
        for snap in snaps:
            self.let_go(snap)

    def __len__(self) -> int:
        with self._lock:
            return len(self._snaps)

    def cached_crc(self, name: str, size: int) -> int | None:
        with self._lock:
            return self._crcs.get((name, size))

    def remember_crc(self, name: str, size: int, crc: int) -> None:
        with self._lock:
            self._crcs[(name, size)] = crc

    def keep_crcs(self, names: set[str]) -> None:
        """Forget the CRCs of files not named in ``names`` (the store's files now: ids
        are never reused, so a file gone is never in a later snapshot). The cache kept
        every file a snapshot ever described, merged away or not, up to 100,000 (24 MB)."""
        with self._lock:
            for key in [key for key in self._crcs if key[0] not in names]:
                del self._crcs[key]
