"""Bitcask's expiry methods, Redis-like: exact expiries, counts, active expiry.

Strategy / invariants:
- ``ExpiryMethods`` is a stateless mixin: methods only, no attributes of its own.
  ``Bitcask`` (bitcask/db.py) inherits it and supplies the keydir, the write lock,
  the clock and the closed flag declared below.
- A record carries its own expiry, so nothing here writes to disk: reclaiming an
  expired key only drops its keydir entry, under the writer's lock (the one owner
  of keydir mutation), and is no write for WATCH. The sampler itself is
  bitcask/_expiry.py; these methods are its public face.
- The counts are O(1) (``len`` of the keydir's maps), as Redis's DBSIZE and INFO
  keyspace are, so expired keys count until reclaimed. ``len(db)`` is exact without
  walking every key with a TTL (bitcask/_expiry.py, ``count_visible``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._expiry import KEYS_PER_ROUND, STALE_PERCENT, reclaim
from ._keydir import Keydir
from ._record import as_bytes, as_count
from .errors import StoreClosedError

__all__ = ["ExpiryMethods"]


class ExpiryMethods:
    """The expiry methods of ``Bitcask``; see bitcask/db.py for the class itself."""

    __slots__ = ()  # stateless: Bitcask holds every attribute

    # Supplied by Bitcask (this mixin declares them, it sets none).
    _kd: Keydir
    _kmap: dict[bytes, int]
    _lock: threading.RLock
    _clock: Callable[[], float]
    _closed: bool

    def expire_at_ms(self, key: bytes | str) -> int | None:
        """The exact expiry of ``key`` in ms since the epoch, or None if it has none.

        The value the record carries, not a countdown: Redis's PEXPIRETIME. Any thread.

        Raises:
            KeyError: the key is absent or expired.
            StoreClosedError: the store is closed.

        Example:
            >>> db.put(b"s", b"x", ttl=30); db.expire_at_ms(b"s") > 0
            True
        """
        key = as_bytes(key, "key")
        if self._closed:
            raise StoreClosedError("store is closed")
        if key not in self._kmap:
            raise KeyError(key)
        exp = self._kd.expiry.get(key)
        if exp is None:
            return None
        if exp <= self._clock() * 1000:
            raise KeyError(key)
        return exp

    def stored_keys(self) -> int:
        """Keys held in memory, expired ones included until reclaimed; O(1).

        Redis's DBSIZE counts the same way (expired keys count until its sampler or
        an access deletes them); ``len(db)`` counts only the visible ones (from a heap
        of the expiries, not a walk), and reclaims the expired keys it found once
        they are more than ``PAST_MAX`` (4,096), as an access would (bitcask/_expiry.py).
        Any thread.

        Raises:
            StoreClosedError: the store is closed.

        Example:
            >>> db.stored_keys() >= len(db)
            True
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        return len(self._kmap)

    def expire_sample(self, limit: int = 20) -> int:
        """Reclaim expired keys from memory: look at up to ``limit`` keys with a TTL
        (the next ones of a rotating pass) and drop the expired ones. Returns how
        many were dropped.

        One round of Redis's active expiry, run by the writer under its lock (one
        owner of keydir mutation); nothing is written to disk, as each record
        carries its own expiry. Not a write for WATCH (see bitcask/_expiry.py). The
        embedded engine runs no sampler by itself: call this (or expire_cycle())
        from a timer; merge drops expired records too. bitcask-server runs
        expire_cycle() every 100 ms. Any thread.

        Raises:
            TypeError: ``limit`` is not an int (a bool or a float is refused too).
            ValueError: ``limit`` is not positive.

        Example:
            >>> db.put(b"s", b"x", ttl=0.001); time.sleep(0.01); db.expire_sample()
            1
        """
        limit = as_count(limit, "limit", 1)  # "5" said "'<=' not supported ..."
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            return reclaim(self._kd, int(self._clock() * 1000), limit)[1]

    def expire_cycle(self, budget_ms: float = 25.0) -> int:
        """Redis's active expiry cycle: rounds of 20 keys (expire_sample) repeated
        while more than 25% of a round was expired, for at most ``budget_ms``.
        Returns how many keys were reclaimed. The lock is taken per round, so
        writes interleave. Any thread; on a closed store it returns 0, so a timer
        racing close() needs no handler (tests/bitcask/test_expiry.py).

        Raises:
            TypeError: ``budget_ms`` is not a number (a str said "unsupported operand").

        Example:
            >>> db.expire_cycle(budget_ms=5)
            0
        """
        if isinstance(budget_ms, bool) or not isinstance(budget_ms, int | float):
            raise TypeError(f"budget_ms must be a number of ms, not {budget_ms!r}")
        deadline = time.monotonic() + budget_ms / 1000
        total = 0
        while True:
            with self._lock:
                if self._closed:
                    return total
                sampled, reclaimed = reclaim(self._kd, int(self._clock() * 1000), KEYS_PER_ROUND)
            total += reclaimed
            if sampled:
                done = reclaimed * 100 <= sampled * STALE_PERCENT
            else:  # only stale ring entries met: go on through them, as Redis does
                done = not self._kd.expiry
            if done or time.monotonic() >= deadline:
                return total

    def expiry_stats(self) -> dict[str, int]:
        """Active expiry's counters, O(1). Any thread.

        Keys: expires (keys with a TTL, expired ones until reclaimed), expired_keys
        (reclaimed by the sampler since open), avg_ttl_ms (the sampler's running
        estimate of the TTL left, as Redis's avg_ttl; 0 when no key has a TTL).

        Example:
            >>> db.expiry_stats()["expired_keys"]
            0
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        s = self._kd.sampler
        expires = len(self._kd.expiry)
        return {
            "expires": expires,
            "expired_keys": s.expired,
            "avg_ttl_ms": s.avg_ttl_ms if expires else 0,
        }

    def expiring_keys(self) -> int:
        """How many keys carry an expiry (expired ones until a merge drops them); O(1).

        Example:
            >>> db.put(b"s", b"x", ttl=30); db.expiring_keys()
            1
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        return len(self._kd.expiry)
