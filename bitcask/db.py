"""The Bitcask class: the store's public face and its read path.

Strategy (invariants):
- Readers take no lock: they read the keydir with one ``dict.get`` and the file
  table with one ``dict.get`` (both atomic under the GIL), then slice an mmap, or
  pread past the end of the active file's mapping. The write path, the file table
  and their invariants live in ``_writer.py``.
- Every get checks the record CRC and that the stored key is the requested key; a
  mismatch raises CorruptRecordError, never returns a value. A location whose file
  left the table (a merge swapped it) is looked up again.
- Iteration pages through ``scan`` (a sorted index kept by the keydir), so it never
  holds a dict iterator the writer could invalidate.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zlib import crc32

from . import _io
from ._datafile import FILE_HEADER_SIZE, data_name, map_file
from ._keydir import FID_SHIFT
from ._record import HEADER_SIZE
from ._rmw import Append, Clear, Expire, GetDel, Incr, IncrFloat, Op, Persist, Rename, Set
from ._writer import Writer, _expiry_ms, as_bytes
from .errors import StoreClosedError

if TYPE_CHECKING:
    from .merge import MergeReport

__all__ = ["Bitcask"]

# The header fields get() needs: crc, flags, expiry, key_len (bytes 0..24 of the 29-byte
# header; the timestamp is skipped and val_len follows from the keydir's record size).
_unpack_check = struct.Struct(">IB8xQI").unpack_from
_pread = os.pread


class Bitcask(Writer):
    """An open store. Create with ``bitcask.open(path, ...)``.

    Thread safety: one writer thread at a time (put/delete/write_batch/batch);
    reads (get, ``in``, len, iteration, scan, ttl, stats) from any thread, at the
    same time as the writer and as a merge; ``merge()`` and ``backup()`` may run in
    a worker thread while the writer and readers go on.

    Example:
        >>> import bitcask, tempfile
        >>> with bitcask.open(tempfile.mkdtemp(), sync="never") as db:
        ...     db.put(b"k", b"v")
        ...     db.get(b"k")
        b'v'
    """

    # The attributes are set by bitcask.open() through _store.open_store.
    # ------------------------------------------------------------------ reads

    def get(self, key: bytes | str) -> bytes | None:
        """Return the value of ``key``, or None if absent or expired.

        Thread safety: any thread, concurrently with the writer and a merge.

        Raises:
            CorruptRecordError: the stored record fails its CRC or key check.
            StoreClosedError: the store is closed.

        Example:
            >>> db.get(b"user:1")
            b'alice'
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        loc = self._kget(key)
        if loc is None:
            return None
        # Literals, not the named constants, on this path (LOAD_CONST is cheaper):
        # 68 = FID_SHIFT, 0xFFFFFFFFF = OFF_MASK, 0xFFFFFFFF = SIZE_MASK.
        entry = self._mget(loc >> 68)
        if entry is None:
            return self._get_retry(key)
        mm, mapped, reader = entry
        off = (loc >> 32) & 0xFFFFFFFFF
        end = off + (loc & 0xFFFFFFFF)
        if end <= mapped:
            crc, flags, exp, kl = _unpack_check(mm, off)  # type: ignore[arg-type]
            body = mm[off + 4 : end]  # type: ignore[index]
        else:
            rec = _pread(reader.fileno(), end - off, off)  # type: ignore[union-attr]
            if len(rec) < HEADER_SIZE:
                raise self._health.corrupt(f"record of {key!r} is truncated")
            crc, flags, exp, kl = _unpack_check(rec)
            body = rec[4:]
        if crc32(body) != crc or kl != len(key) or not body.startswith(key, 25) or flags & 1:
            raise self._health.corrupt(
                f"record of {key!r} at file {loc >> 68} offset {off} fails its check"
            )
        if exp and exp <= self._clock() * 1000:
            return None
        return body[25 + kl :]

    def _get_retry(self, key: bytes) -> bytes | None:
        # The keydir named a file that left the table: a merge swap updates the keydir
        # before dropping files, so a fresh lookup finds the new location.
        loc: int | None = None
        for _ in range(100):
            if self._blocked is not None and isinstance(self._blocked, StoreClosedError):
                raise StoreClosedError("store is closed")
            loc = self._kmap.get(key)
            if loc is None:
                return None
            if (loc >> FID_SHIFT) in self._maps:
                return self.get(key)
            time.sleep(0.0001)
        raise self._health.corrupt(
            f"record of {key!r} names file {loc and loc >> FID_SHIFT}, which is gone"
        )

    def __getitem__(self, key: bytes | str) -> bytes:
        """``db[key]``: like get() but raises KeyError when absent. Any thread.

        Example:
            >>> db[b"user:1"]
            b'alice'
        """
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        """``key in db``: present and not expired. Any thread.

        Example:
            >>> b"user:1" in db
            True
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if key not in self._kmap:
            return False
        exp = self._kd.expiry.get(key) if self._kd.expiry else None
        return exp is None or exp > self._clock() * 1000

    def __len__(self) -> int:
        """Number of visible (unexpired) keys. Any thread.

        Example:
            >>> len(db)
            2
        """
        n = len(self._kmap)
        if self._kd.expiry:
            now = self._clock() * 1000
            n -= sum(1 for e in list(self._kd.expiry.values()) if e <= now)
        return n

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
            ValueError: ``limit`` is negative.

        Example:
            >>> page = db.scan(b"user:", limit=2); db.scan(b"user:", after=page[-1])
            [b'user:3']
        """
        if limit < 0:
            raise ValueError("limit must be >= 0")
        prefix = as_bytes(prefix, "prefix")
        after_b = None if after is None else as_bytes(after, "after")
        return self._kd.scan(prefix, after_b, limit, int(self._clock() * 1000))

    def ttl(self, key: bytes | str) -> float | None:
        """Seconds until ``key`` expires, or None if it has no TTL. Any thread.

        Raises:
            KeyError: the key is absent or expired.

        Example:
            >>> db.put(b"s", b"x", ttl=30); round(db.ttl(b"s"))
            30
        """
        key = as_bytes(key, "key")
        if key not in self:
            raise KeyError(key)
        exp = self._kd.expiry.get(key)
        if exp is None:
            return None
        return max(exp / 1000 - self._clock(), 0.0)

    # ------------------------------------------------------------ whole store

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

        Example:
            >>> report = db.merge(); report.reclaimed_bytes >= 0
            True
        """
        from .merge import run_merge

        return run_merge(self, progress)

    def _merge_files(self, files: Iterable[int]) -> MergeReport:
        """Merge only ``files`` (tests of subset merges)."""
        from .merge import run_merge

        return run_merge(self, None, files)

    def backup(self, dest: str | os.PathLike[str]) -> None:
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
        from .backup import run_backup

        run_backup(self, os.fspath(dest))

    # ------------------------------------------------- atomic read-modify-write

    def _one(self, op: Op) -> Any:
        answers = self.commit([op])
        assert answers is not None  # None only answers a watch
        result = answers[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _at_ms(self, ttl: float | None, at_ms: int | None) -> int:
        if ttl is not None and at_ms is not None:
            raise ValueError("give ttl or at_ms, not both")
        return _expiry_ms(self._clock, ttl) if ttl is not None else (at_ms or 0)

    def set(
        self,
        key: bytes | str,
        value: bytes | str,
        *,
        ttl: float | None = None,
        at_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keep_ttl: bool = False,
    ) -> tuple[bool, bytes | None]:
        """Store ``value`` only if ``key`` is absent (``nx``) or present (``xx``), with
        an expiry (``ttl`` seconds, or ``at_ms`` since the epoch) or the one it has
        (``keep_ttl``); decided atomically by the writer. One writer thread at a time.

        Returns:
            (applied, the value before).

        Example:
            >>> db.set(b"lock", b"me", nx=True, ttl=30)
            (True, None)
        """
        at = self._at_ms(ttl, at_ms)
        return self._one(Set(as_bytes(key, "key"), as_bytes(value, "value"), at, nx, xx, keep_ttl))  # type: ignore[no-any-return]

    def incr(self, key: bytes | str, delta: int = 1) -> int:
        """Add ``delta`` to the integer at ``key`` (absent: 0), keeping its expiry.

        Raises:
            NotANumberError: the value is not a signed 64-bit integer, or it overflows.

        Example:
            >>> db.incr(b"visits")
            1
        """
        return self._one(Incr(as_bytes(key, "key"), delta))  # type: ignore[no-any-return]

    def incr_float(self, key: bytes | str, delta: float) -> bytes:
        """Add ``delta`` to the number at ``key`` (absent: 0); returns it as stored.

        Example:
            >>> db.incr_float(b"t", 0.5)
            b'0.5'
        """
        return self._one(IncrFloat(as_bytes(key, "key"), delta))  # type: ignore[no-any-return]

    def append(self, key: bytes | str, suffix: bytes | str) -> int:
        """Append ``suffix`` to the value at ``key`` (absent: create it); new length.

        Example:
            >>> db.append(b"log", b"x")
            1
        """
        return self._one(Append(as_bytes(key, "key"), as_bytes(suffix, "suffix")))  # type: ignore[no-any-return]

    def get_delete(self, key: bytes | str) -> bytes | None:
        """Delete ``key`` and return the value it had (None if absent), atomically.

        Example:
            >>> db.get_delete(b"token")
        """
        return self._one(GetDel(as_bytes(key, "key")))  # type: ignore[no-any-return]

    def expire(
        self,
        key: bytes | str,
        ttl: float | None = None,
        *,
        at_ms: int | None = None,
        cond: str = "",
    ) -> bool:
        """Give an existing key an expiry (``ttl`` seconds or ``at_ms``); ``cond`` as
        Redis's EXPIRE: "nx", "xx", "gt", "lt" or "" (always). An expiry in the past
        deletes the key. Returns whether it was applied (False for an absent key).

        Example:
            >>> db.expire(b"session", 60)
            True
        """
        return self._one(Expire(as_bytes(key, "key"), self._at_ms(ttl, at_ms), cond))  # type: ignore[no-any-return]

    def persist(self, key: bytes | str) -> bool:
        """Remove the expiry of ``key``; returns whether it had one.

        Example:
            >>> db.persist(b"session")
            True
        """
        return self._one(Persist(as_bytes(key, "key")))  # type: ignore[no-any-return]

    def rename(self, key: bytes | str, dst: bytes | str, *, nx: bool = False) -> bool:
        """Move the value and expiry of ``key`` to ``dst`` atomically (with ``nx`` only
        if ``dst`` is absent). Returns whether it moved.

        Raises:
            NoSuchKeyError: ``key`` is absent.

        Example:
            >>> db.rename(b"tmp", b"final")
            True
        """
        return self._one(Rename(as_bytes(key, "key"), as_bytes(dst, "key"), nx))  # type: ignore[no-any-return]

    def clear(self) -> int:
        """Delete every key in one atomic batch; returns how many there were.

        Example:
            >>> db.clear()
            3
        """
        return self._one(Clear())  # type: ignore[no-any-return]

    def expiring_keys(self) -> int:
        """How many keys carry an expiry (expired ones until a merge drops them); O(1).

        Example:
            >>> db.put(b"s", b"x", ttl=30); db.expiring_keys()
            1
        """
        return len(self._kd.expiry)

    def disk_health(self) -> dict[str, Any]:
        """The disk state as writes saw it; cheap, any thread (also ``stats()["disk"]``).

        Keys: state ("ok" | "write_failed" | "fsync_failed"), reason, since,
        last_attempt (wall-clock seconds or None) and attempts (probes so far). After a
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
        "write_failed" | "fsync_failed", reason, since, last_attempt, attempts (wall-clock
        seconds; after a failed write a probe retries with back-off and writes resume by
        themselves; after a failed fsync, only a restart resumes them)}, merging, merges,
        last_merge_error, recovery.

        Example:
            >>> db.stats()["keys"]
            2
        """
        sizes = dict(self._sizes)
        if not self._readonly and self._active_id in self._kd.live:
            sizes[self._active_id] = self._offset
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
        kbytes = self._kd.estimate_bytes()
        return {
            "path": self.path,
            "keys": n,
            "keydir_bytes": kbytes,
            "keydir_bytes_per_key": round(kbytes / len(self._kmap), 1) if self._kmap else 0.0,
            "live_bytes": live_total,
            "dead_bytes": disk - live_total,
            "disk_bytes": disk,
            "files": files,
            "active_file": None if self._readonly else self._active_id,
            "sync": self.options.sync,
            "readonly": self._readonly or self.readonly_reason is not None,
            "readonly_reason": self.readonly_reason,
            "disk": self.disk_health(),
            "merging": self._merge_lock.locked(),
            "merges": self._merges,
            "last_merge_error": self._last_merge_error,
            "recovery": self.recovery.to_dict(),
        }

    def close(self) -> None:
        """Flush, write the active file's hint, release the lock. Idempotent.

        Call from the writer thread once readers are done; a running merge is
        abandoned (the old files stay authoritative) or, if already swapping,
        finished first.

        Example:
            >>> db = bitcask.open("./data"); db.put(b"k", b"v"); db.close()
        """
        if self._closing:
            return
        self._closing = True
        self._stop.set()
        self._tasks.put(None)
        for t in self._threads:
            t.join()
        # A merge in another thread notices _closing and abandons its copy, or
        # finishes its swap; either way wait so it never touches a closed store.
        merge_paused = self._merge_lock.acquire(timeout=60)
        sealed = None
        with self._lock:
            self._blocked = StoreClosedError("store is closed")
            if not self._readonly and self._wfd >= 0:
                try:
                    _io.fsync(self._wfd)
                except OSError:
                    pass
                self._seal_active()  # truncate the preallocated file, close it
                if self._offset == FILE_HEADER_SIZE and self.readonly_reason is None:
                    os.unlink(os.path.join(self.path, data_name(self._active_id)))
                    self._maps.pop(self._active_id, None)
                    self._kd.live.pop(self._active_id, None)
                elif self.options.hint_files and self.readonly_reason is None:
                    sealed = self._active_id
                    self._sizes[sealed] = self._offset
                    path = os.path.join(self.path, data_name(sealed))
                    self._maps[sealed] = (map_file(path), self._offset, None)
        if sealed is not None:
            try:
                self._write_hint(sealed)
            except OSError:
                pass
        with self._lock:
            self._maps.clear()
            self._reader = None
            self._release_lock()
        if merge_paused:
            self._merge_lock.release()

    def _abandon(self) -> None:
        """Tests: stop as if the process died (no flush, no hint), releasing the lock."""
        self._closing = True
        self._stop.set()
        self._tasks.put(None)
        for t in self._threads:
            t.join()
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        self._blocked = StoreClosedError("store is closed")
        self._maps.clear()
        self._release_lock()

    def __enter__(self) -> Bitcask:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self._readonly else self.options.sync
        return f"<Bitcask {self.path!r} {mode} keys={len(self._kmap)}>"
