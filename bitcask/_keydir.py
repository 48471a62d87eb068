"""The keydir: every live key mapped to where its latest record lives.

Strategy: memory is the cost of the store, so an entry is one ``bytes`` key and one
``int`` packing (file_id, offset, record_size)::

    loc = file_id << 68 | offset << 32 | record_size      (file_id < 2**22)

The int stays below 2**90, i.e. three 30-bit CPython digits (36 bytes), against a
tuple of ints at ~230 bytes per key. Expiries live in a side dict only for keys that
have one. Per-file live bytes are kept incrementally by the writer; ``dead = size -
live``.

Concurrency: the writer thread mutates ``map``/``expiry``/``live`` (single dict
operations, atomic under the GIL); readers only do ``dict.get`` and take snapshots
with ``list(dict)`` (one C call), so readers need no lock. The sorted index used by
``scan`` has its own small lock, taken by scanners only; the writer appends newly
inserted keys to ``new_keys`` (atomic) and scanners fold them into the index.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_left, bisect_right

__all__ = ["FID_SHIFT", "MAX_FILE_ID", "OFF_MASK", "SIZE_MASK", "Keydir", "Sampler", "pack"]

FID_SHIFT = 68
OFF_SHIFT = 32
OFF_MASK = (1 << 36) - 1
SIZE_MASK = (1 << 32) - 1
MAX_FILE_ID = (1 << 22) - 1
# The shortest run of deleted keys a scan takes out of the sorted index (and at least
# a 256th of it, so the copy that costs is paid for by the walks it saves).
STALE_RUN = 256


def pack(file_id: int, offset: int, size: int) -> int:
    """Pack a record location into one int (< 2**90)."""
    return (file_id << FID_SHIFT) | (offset << OFF_SHIFT) | size


class Sampler:
    """Active expiry's state and counters, one per keydir; bitcask/_expiry.py runs it."""

    __slots__ = ("avg_ttl_ms", "expired", "pos", "ring")

    def __init__(self) -> None:
        self.ring: list[bytes] = []  # snapshot of the expiry dict's keys
        self.pos = 0  # next index of ring to sample
        self.expired = 0  # keys reclaimed so far (INFO's expired_keys)
        self.avg_ttl_ms = 0  # running estimate of the TTL left (INFO's avg_ttl)


class Keydir:
    """Key -> packed location, expiries, per-file live bytes, and a sorted index."""

    __slots__ = (
        "_deleted",
        "_index",
        "_index_lock",
        "due",
        "due_log",
        "due_past",
        "expiry",
        "indexed",
        "live",
        "map",
        "new_keys",
        "sampler",
    )

    def __init__(self) -> None:
        self.map: dict[bytes, int] = {}
        # key -> expiry in ms since the epoch, only for keys written with a TTL
        self.expiry: dict[bytes, int] = {}
        # file id -> bytes of records the keydir points into
        self.live: dict[int, int] = {}
        # keys inserted since the sorted index last absorbed them; the writer appends
        # only once a scan has built the index (``indexed``), so nothing piles up
        # in a store that is never scanned
        self.new_keys: list[bytes] = []
        self.indexed = False
        self._index: list[bytes] | None = None
        self._deleted = 0
        self._index_lock = threading.Lock()
        # active expiry's cursor and counters (bitcask/_expiry.py)
        self.sampler = Sampler()
        # exact counts (bitcask/_expiry.py, ``count_visible``): the keys with a TTL as
        # a heap of (expiry, key), and the keys whose expiry the writer set since the
        # last count (None: not kept; the next count builds the heap from ``expiry``)
        self.due: list[tuple[int, bytes]] = []
        self.due_log: list[bytes] | None = None
        # key -> expiry of the keys a count found expired (popped from ``due``), still
        # held until the sampler, a merge or a write removes or changes them
        self.due_past: dict[bytes, int] = {}

    def compute_live(self) -> None:
        """Recompute ``live`` in one pass over the keydir (after loading)."""
        live: dict[int, int] = {}
        get = live.get
        for loc in self.map.values():
            fid = loc >> FID_SHIFT
            live[fid] = get(fid, 0) + (loc & SIZE_MASK)
        self.live = live

    def after_fork(self) -> None:
        """In a child of fork(): a fresh index lock (a parent thread may have held it)."""
        self._index_lock = threading.Lock()

    def note_deleted(self) -> None:
        """The writer removed a key: the sorted index holds one more stale entry.

        Once the next scan would rebuild the index anyway (``_refresh_index``'s rule),
        the index and ``new_keys`` are let go of now: they hold every deleted key's
        bytes, and ``new_keys`` takes every inserted key for as long as no scan runs,
        so a store scanned once and then written and deleted through kept them all
        (200,000 keys written and deleted: +70 MB a round with no key left).
        """
        self._deleted = n = self._deleted + 1
        index = self._index
        if index is not None and n > len(index) // 2 + 1024 and self._index_lock.acquire(False):
            # A scanner folding or rebuilding holds the lock: then the next delete
            # tries again. Only this (the writer's) thread appends to new_keys, and it
            # stops once ``indexed`` is False, until a scan rebuilds from ``map``.
            try:
                self.indexed = False
                self._index = None
                del self.new_keys[:]
                self._deleted = 0
            finally:
                self._index_lock.release()

    def visible(self, key: bytes, now_ms: int) -> bool:
        """Is ``key`` present and unexpired?"""
        if key not in self.map:
            return False
        exp = self.expiry.get(key)
        return exp is None or exp > now_ms

    def _refresh_index(self) -> list[bytes]:
        # Caller holds _index_lock.
        index = self._index
        if index is None or self._deleted > len(index) // 2 + 1024:
            self._deleted = 0
            # Order matters: from here on the writer records new keys, so a key
            # inserted while sorting is in new_keys (de-duplicated on the next fold).
            self.indexed = True
            n = len(self.new_keys)
            del self.new_keys[:n]
            index = sorted(self.map)
            self._index = index
            return index
        new = self.new_keys
        n = len(new)
        if n:
            fresh = new[:n]
            del new[:n]
            fresh = [k for k in set(fresh) if not _contains_sorted(index, k)]
            if fresh:
                fresh.sort()
                index = index + fresh
                index.sort()  # two sorted runs: timsort merges them in linear time
                self._index = index
        return index

    def scan(
        self,
        prefix: bytes,
        after: bytes | None,
        limit: int,
        now_ms: int,
        expired: list[bytes] | None = None,
    ) -> list[bytes]:
        """Up to ``limit`` visible keys with ``prefix``, ascending, strictly after ``after``;
        the expired keys walked past are appended to ``expired`` (if given), for the
        caller to reclaim under the writer's lock."""
        with self._index_lock:
            index = self._refresh_index()
        if after is None or after < prefix:
            i = bisect_left(index, prefix)
        else:
            i = bisect_right(index, after)
        out: list[bytes] = []
        kd = self.map
        exp = self.expiry
        n = len(index)
        stale_from = -1  # where the run of deleted keys being walked began
        run = (0, 0)  # the longest such run met
        while i < n and len(out) < limit:
            key = index[i]
            if not key.startswith(prefix):
                break
            if key in kd:
                if stale_from >= 0:
                    if i - stale_from > run[1] - run[0]:
                        run = (stale_from, i)
                    stale_from = -1
                e = exp.get(key) if exp else None
                if e is None or e > now_ms:
                    out.append(key)
                elif expired is not None:
                    expired.append(key)
            elif stale_from < 0:
                stale_from = i
            i += 1
        if stale_from >= 0 and i - stale_from > run[1] - run[0]:
            run = (stale_from, i)
        if run[1] - run[0] >= max(STALE_RUN, n >> 8):
            self._cut(index, *run)
        return out

    def _cut(self, index: list[bytes], a: int, b: int) -> None:
        # A scan walked index[a:b], keys deleted since it was built: take them out, so
        # the next scan from here does not walk them again. Paging from the start
        # while deleting each page (scan(limit=100), delete those, again) walked every
        # key deleted so far, until half the index was: 100,000 keys took 26 s.
        # Checked again under the lock, which every fold and rebuild of the index
        # takes: a key inserted again since is in ``map`` now (the writer inserts it
        # before it appends it to ``new_keys``), and then the run stays for the next
        # rebuild; a fold since made another index, which the next scan cuts.
        with self._index_lock:
            if self._index is not index:
                return
            kd = self.map
            if any(k in kd for k in index[a:b]):
                return
            self._index = index[:a] + index[b:]
            self._deleted = max(0, self._deleted - (b - a))

    def estimate_bytes(self) -> int:
        """Bytes held by the keydir's objects, from ``sys.getsizeof``.

        Counts the dicts' tables, every key object, every location int (all the same
        size: 36 bytes), every expiry int, and the sorted index list (its keys are
        shared). Allocator rounding is not included.
        """
        kd = self.map
        n = len(kd)
        total = sys.getsizeof(kd) + sys.getsizeof(self.expiry) + sys.getsizeof(self.live)
        total += n * (sys.getsizeof(b"") + sys.getsizeof(1 << 80)) + sum(map(len, list(kd)))
        total += len(self.expiry) * sys.getsizeof(1 << 40)
        index = self._index
        if index is not None:
            total += sys.getsizeof(index) + sys.getsizeof(self.new_keys)
        return total


def _contains_sorted(index: list[bytes], key: bytes) -> bool:
    i = bisect_left(index, key)
    return i < len(index) and index[i] == key
