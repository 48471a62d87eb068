"""Bitcask's views of the whole key space: len(db), iteration, keys, items, scan.

Strategy / invariants:
- ``ScanMethods`` is a stateless mixin: methods only, no attributes of its own.
  ``Bitcask`` (bitcask/db.py) inherits it and supplies the keydir, the write lock,
  the clock and the closed flag declared below, and ``get`` for ``items``.
- Iteration pages through ``scan`` (a sorted index the keydir keeps, folding in only
  the keys inserted since the last call), so it never holds a dict iterator the
  writer could invalidate, and never re-sorts the whole keydir per page. A write
  made during iteration may or may not appear; no key appears twice.
- Only visible keys are listed or counted: an expired key is absent even before
  active expiry reclaims it. A scan that walked past ``RECLAIM_WALKED`` expired keys
  or more reclaims them under the writer's lock if it is free (a scan never waits for
  it), as an access would (Redis's SCAN too expires the keys it visits), so no later
  scan walks them again. ``len`` counts from a heap of the expiries
  (bitcask/_expiry.py, ``count_visible``), under the write lock, so it never walks
  every key with a TTL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._expiry import count_visible, drop_expired
from ._keydir import Keydir
from ._record import as_bytes, as_count
from .errors import StoreClosedError

__all__ = ["RECLAIM_WALKED", "ScanMethods"]

# The fewest expired keys a scan walked past that it reclaims (taking the writer's
# lock); fewer cost each scan less than the lock would.
RECLAIM_WALKED = 64


class ScanMethods:
    """The key-space views of ``Bitcask``; see bitcask/db.py for the class itself."""

    __slots__ = ()  # stateless: Bitcask holds every attribute

    # Supplied by Bitcask (this mixin declares them, it sets none).
    _kd: Keydir
    _kmap: dict[bytes, int]
    _lock: threading.RLock
    _clock: Callable[[], float]
    _closed: bool

    if TYPE_CHECKING:

        def get(self, key: bytes | str) -> bytes | None: ...

    def __len__(self) -> int:
        """Number of visible (unexpired) keys. Any thread.

        O(1) amortized plus the keys expired and not reclaimed yet (a heap of the
        expiries, bitcask/_expiry.py ``count_visible``), taken under the write lock.

        Raises:
            StoreClosedError: the store is closed.

        Example:
            >>> len(db)
            2
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        if not self._kd.expiry:
            return len(self._kmap)
        # From a heap of the expiries: walking every key with a TTL cost 50 ms at
        # 1,000,000 (bitcask/_expiry.py, count_visible).
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            return count_visible(self._kd, self._clock() * 1000)

    def __iter__(self) -> Iterator[bytes]:
        """Iterate keys in ascending byte order (see keys()). Any thread.

        Example:
            >>> sorted(db) == list(db)
            True
        """
        return self.keys()

    def keys(self, prefix: bytes | str = b"") -> Iterator[bytes]:
        """Yield the visible keys starting with ``prefix``, in ascending byte order.

        Pages through scan(), so writes made during iteration may or may not appear.
        Any thread.

        Example:
            >>> list(db.keys(b"user:"))
            [b'user:1', b'user:2']
        """
        prefix = as_bytes(prefix, "prefix")
        after: bytes | None = None
        while True:
            page = self.scan(prefix, after, 1024)
            yield from page
            if len(page) < 1024:
                return
            after = page[-1]

    def items(self, prefix: bytes | str = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for visible keys with ``prefix``, ascending. Any thread.

        Example:
            >>> dict(db.items(b"user:"))
            {b'user:1': b'alice'}
        """
        for key in self.keys(prefix):
            value = self.get(key)
            if value is not None:
                yield key, value

    def scan(
        self, prefix: bytes | str = b"", after: bytes | str | None = None, limit: int = 100
    ) -> list[bytes]:
        """Return up to ``limit`` visible keys with ``prefix``, ascending, strictly after ``after``.

        Paging is cheap: a sorted index is kept and only newly inserted keys are
        folded into it, so repeated calls never re-sort the whole keydir. Any thread.

        Raises:
            TypeError: ``limit`` is not an int (a bool or a float is refused too).
            ValueError: ``limit`` is negative.
            StoreClosedError: the store is closed (iteration and keys() too).

        Example:
            >>> page = db.scan(b"user:", limit=2); db.scan(b"user:", after=page[-1])
            [b'user:3']
        """
        limit = as_count(limit, "limit", 0)
        if self._closed:
            raise StoreClosedError("store is closed")
        prefix = as_bytes(prefix, "prefix")
        after_b = None if after is None else as_bytes(after, "after")
        now_ms = int(self._clock() * 1000)
        expired: list[bytes] = []
        page = self._kd.scan(prefix, after_b, limit, now_ms, expired)
        if len(expired) >= RECLAIM_WALKED and self._lock.acquire(blocking=False):
            # Reclaimed as an access would (bitcask/_expiry.py, drop_expired): left in
            # the keydir (the embedded engine runs no sampler by itself), they were
            # walked again by every scan from before them: 100 scan(limit=10) past
            # 100,000 expired keys took 11.9 s. Only if the lock is free: a scan never
            # waits for the writer (the server scans on its event loop); the next
            # scan, or the sampler, reclaims them then.
            try:
                if not self._closed:
                    drop_expired(self._kd, expired, now_ms)
            finally:
                self._lock.release()
        return page
