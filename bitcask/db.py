"""The Bitcask class: the store's public face and its read path.

Strategy (invariants):
- ``Bitcask`` composes the parts of an open store, each the one owner of its
  state: the keydir (``_keydir``), the file table (``_files``), the writer
  (``_writer``, every write) and the merge coordination (``merge.Merges``). It
  forwards writes to the writer and serves reads itself. ``_store.open_store``
  builds the parts in one linear sequence.
- Readers take no lock: they read the keydir with one ``dict.get`` and the file
  table with one ``dict.get`` (both atomic under the GIL), then slice an mmap, or
  pread past the end of the active file's mapping.
- Every get checks the record CRC and that the stored key is the requested key; a
  mismatch raises CorruptRecordError, never returns a value. A location whose file
  left the table (a merge swapped it) is looked up again.
- Iteration pages through ``scan`` (a sorted index kept by the keydir), so it never
  holds a dict iterator the writer could invalidate.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any
from zlib import crc32

from ._expiry import KEYS_PER_ROUND, STALE_PERCENT, reclaim
from ._files import FileTable
from ._group import Watch, Watches
from ._keydir import FID_SHIFT, Keydir
from ._pins import Pins
from ._record import HEADER_SIZE, as_bytes
from ._recovery import RecoveryReport
from ._rmw import (
    Append,
    Clear,
    Expire,
    GetDel,
    Incr,
    IncrFloat,
    Op,
    Persist,
    Rename,
    Set,
)
from ._writer import Writer, expiry_ms
from .backup import run_backup
from .batch import Batch
from .errors import StoreClosedError
from .merge import MergeReport, Merges, run_merge
from .options import Options

__all__ = ["Bitcask"]

# The header fields get() needs: crc, flags, expiry, key_len (bytes 0..24 of the 29-byte
# header; the timestamp is skipped and val_len follows from the keydir's record size).
_unpack_check = struct.Struct(">IB8xQI").unpack_from
_pread = os.pread


class Bitcask:
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

    def __init__(
        self,
        path: str,
        options: Options,
        *,
        keydir: Keydir,
        files: FileTable,
        lock: threading.Lock,
        clock: Callable[[], float],
        readonly: bool,
        recovery: RecoveryReport,
        release_lock: Callable[[], None],
    ) -> None:
        """Compose an open store from its loaded parts (``bitcask.open`` does this)."""
        self.path = path
        self.options = options
        self.recovery = recovery
        # The parts (engine-internal: merge, backup and snapshot work through them).
        self.keydir = keydir
        self.files = files
        self.writer = Writer(
            path,
            options,
            keydir=keydir,
            files=files,
            lock=lock,
            clock=clock,
            read=self.get,
            readonly=readonly,
        )
        self.merges = Merges(keydir, files, self.writer)
        self.writer.after_rotate = self.merges.maybe_auto
        # The read path's bound lookups (one dict.get each; neither dict is replaced).
        self._kget = keydir.map.get
        self._mget = files.entries.get
        self._kmap = keydir.map
        self._kd = keydir
        self._clock = clock
        self._lock = lock
        self._health = self.writer.health
        self._readonly = readonly
        self._release_lock = release_lock
        self._closed = False

    # ------------------------------------------------------------------ writes

    def put(self, key: bytes | str, value: bytes | str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``ttl`` (seconds) it expires after that.

        One write() per call; under sync="always" also one fsync before returning.
        Thread safety: one writer thread at a time; readers may run concurrently.

        Raises:
            KeyTooLargeError / ValueTooLargeError: over the configured limits.
            ReadOnlyError: the store is readonly or turned read-only after a disk error.
            StoreIOError: this write failed (the store is now read-only).
            StoreClosedError: the store is closed.

        Example:
            >>> db.put(b"user:1", "alice", ttl=3600)
        """
        self.writer.put(key, value, ttl)

    def __setitem__(self, key: bytes | str, value: bytes | str) -> None:
        """``db[key] = value``: put() without a TTL. One writer thread at a time.

        Example:
            >>> db[b"user:1"] = b"alice"
        """
        self.writer.put(key, value)

    def __delitem__(self, key: bytes | str) -> None:
        """``del db[key]``: delete(), raising KeyError when absent. One writer at a time.

        Example:
            >>> del db[b"user:1"]
        """
        if not self.writer.delete(key):
            raise KeyError(key)

    def delete(self, key: bytes | str) -> bool:
        """Delete ``key``; return whether it existed (visible, unexpired).

        Writes a tombstone naming the file of the deleted value, so no merge can
        resurrect the key. Absent keys write nothing. One writer thread at a time.

        Raises:
            ReadOnlyError, StoreIOError, StoreClosedError: as put().

        Example:
            >>> db.delete(b"user:1")
            True
        """
        return self.writer.delete(key)

    def write_batch(self, ops: Sequence[Sequence[Any]], sync: bool | None = None) -> list[object]:
        """Apply ``ops`` atomically: after any crash, all of them or none.

        ``ops``: ("put", key, value[, ttl_or_None]) or ("delete", key). Everything is
        validated first; then all records are encoded into one buffer written with
        exactly one write(), followed by at most one fsync (``sync=None`` follows
        the policy, True forces one, False skips it); the keydir is updated last.
        One writer thread at a time (an executor thread is fine).

        Returns:
            One result per op: None for a put, bool (existed) for a delete.

        Raises:
            ValueError / TypeError: a malformed op (nothing written).
            KeyTooLargeError / ValueTooLargeError: an op (or the batch) too large.
            ReadOnlyError, StoreIOError, StoreClosedError: as put().

        Example:
            >>> db.write_batch([("put", b"a", b"1", None), ("delete", b"b")])
            [None, False]
        """
        return self.writer.write_batch(ops, sync)

    def write_group(
        self, batches: Sequence[Sequence[Sequence[Any]]], sync: bool | None = None
    ) -> list[list[object] | BaseException]:
        """Apply independent batches with one write() and at most one fsync (group commit).

        Each element of ``batches`` is a list of ops as for write_batch(), atomic on
        its own: a batch of one op is a plain record, a longer one gets its own
        BEGIN/COMMIT markers. The batches do not share each other's fate, neither
        here (a batch that fails validation is refused alone) nor on disk (a damaged
        record of one batch never costs another batch anything). They apply in order,
        so a later batch sees what an earlier one wrote.

        Returns:
            One entry per batch: its results (as write_batch()) or the error that
            refused it: a ValueError / TypeError of validation (KeyTooLargeError,
            ValueTooLargeError, ...) or StoreFullError (new keys past max_keys).

        Raises:
            ReadOnlyError, StoreIOError, StoreClosedError: as put(), for the whole group
            (a reason every batch shares: nothing of the group was written).

        Example:
            >>> db.write_group([[("put", b"a", b"1")], [("put", b"k", b"v", 9e99)]])
            [[None], ValueError('ttl 9e+99 puts the expiry past the largest one stored (...)')]
        """
        return self.writer.write_group(batches, sync)

    def commit(
        self, ops: Sequence[object], *, watch: Watch | None = None, sync: bool | None = None
    ) -> list[object] | None:
        """Apply ``ops`` atomically, deciding read-modify-write ops at apply time.

        ``ops`` mixes write_batch()'s tuples with ``Op`` objects (``bitcask.Set``,
        ``Incr``, ``IncrFloat``, ``Append``, ``GetDel``, ``Expire``, ``Persist``,
        ``GetEx``, ``Rename``, ``Clear``, ``MSetNx``, and the reads ``Peek`` and
        ``CountKeys``), each evaluated inside the writer against the state every
        earlier write left, so it is atomic against all other writes.
        With ``watch`` (from watch()), nothing is applied if a watched key was written
        since the watch was taken. One writer thread at a time.

        Returns:
            One result per op (an Op's answer, or the NotANumberError /
            NoSuchKeyError / CorruptRecordError it met, which writes nothing while
            the other ops apply), or None when the watch saw a write.

        Raises:
            ValueError / TypeError: a malformed op (nothing written).
            StoreFullError: new keys past max_keys (nothing written).
            ReadOnlyError, StoreIOError, StoreClosedError: as put().

        Example:
            >>> w = db.watch(b"n"); db.commit([bitcask.Incr(b"n", 2)], watch=w)
            [2]
        """
        return self.writer.commit(ops, watch=watch, sync=sync)

    def watch(self, *keys: bytes | str) -> Watch:
        """Start counting writes to ``keys``; commit(..., watch=) then applies only if
        none was written since. Release the watch (or use ``with``) when done.

        Example:
            >>> with db.watch(b"a") as w: db.commit([("put", b"a", b"2")], watch=w)
            [None]
        """
        return self.writer.watch(*keys)

    def write_planned(
        self,
        batches: Sequence[Sequence[object]],
        watches: Sequence[Watch | None],
        sync: bool | None = None,
    ) -> list[list[object] | BaseException | None]:
        """write_group() for batches that hold ``Op`` objects or watches: every batch
        is decided in order under the lock (``_group.plan_group``), then written as one
        write like any group. Per batch: its results, the error that refused it, or
        None when its watch saw a write."""
        return self.writer.write_planned(batches, watches, sync)

    def batch(self) -> Batch:
        """Collect puts and deletes, applied atomically by write_batch() on exit.

        Nothing is written if the block raises. One writer thread at a time.

        Example:
            >>> with db.batch() as b:
            ...     b.put(b"a", b"1"); b.delete(b"b")
        """
        return Batch(self)

    def sync(self) -> None:
        """fsync the active file now, whatever the policy. Any thread (takes the write lock).

        Raises:
            StoreIOError: the fsync failed (the store is now read-only).

        Example:
            >>> db.put(b"k", b"v"); db.sync()  # durable even under sync="never"
        """
        self.writer.sync()

    @property
    def readonly_reason(self) -> str | None:
        """Why writes are refused (readonly open, disk fault), or None."""
        return self.writer.readonly_reason

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
        # Literals, not the named constants, on this path (LOAD_CONST is cheaper: 9,774
        # against 9,927 instructions per get under callgrind, 20,000 gets of 100 B
        # values; bench/embedded.py's get column): 68 = FID_SHIFT, 0xFFFFFFFFF =
        # OFF_MASK, 0xFFFFFFFF = SIZE_MASK (tests/bitcask/test_shape.py ties them).
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
            if self._closed:
                raise StoreClosedError("store is closed")
            loc = self._kmap.get(key)
            if loc is None:
                return None
            if (loc >> FID_SHIFT) in self.files.entries:
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
        return run_merge(self.merges, progress)

    def _merge_files(self, files: Iterable[int]) -> MergeReport:
        """Merge only ``files`` (tests of subset merges)."""
        return run_merge(self.merges, None, files)

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
        run_backup(self.merges, os.fspath(dest))

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
        return expiry_ms(self._clock, ttl) if ttl is not None else (at_ms or 0)

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

    def close(self) -> None:
        """Flush, write the active file's hint, release the lock. Idempotent.

        Call from the writer thread once readers are done; a running merge is
        abandoned (the old files stay authoritative) or, if already swapping,
        finished first.

        Example:
            >>> db = bitcask.open("./data"); db.put(b"k", b"v"); db.close()
        """
        writer = self.writer
        if writer.closing:
            return
        writer.stop_threads()
        # A merge in another thread notices ``closing`` and abandons its copy, or
        # finishes its swap; either way wait so it never touches a closed store.
        merge_paused = self.merges.lock.acquire(timeout=60)
        writer.close_files(StoreClosedError("store is closed"))
        with self._lock:
            self._closed = True
            self.files.close()
            self._release_lock()
        if merge_paused:
            self.merges.lock.release()

    def _abandon(self) -> None:
        """Tests: stop as if the process died (no flush, no hint), releasing the lock."""
        self.writer.stop_threads()
        self.writer.abandon_files(StoreClosedError("store is closed"))
        self._closed = True
        self.files.close()
        self._release_lock()

    # Tests reach these parts under their old names.
    @property
    def _merge_lock(self) -> threading.Lock:
        return self.merges.lock

    @property
    def _pins(self) -> Pins:
        return self.merges.pins

    @_pins.setter
    def _pins(self, pins: Pins) -> None:
        self.merges.pins = pins

    @property
    def _watches(self) -> Watches:
        return self.writer.watches

    @property
    def _active_id(self) -> int:
        return self.files.active_id

    def _rotate(self) -> None:
        """Seal the active file and start the next (caller holds the write lock)."""
        self.writer.rotate()

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

    # ------------------------------------------------------- expiry (Redis-like)

    def expire_at_ms(self, key: bytes | str) -> int | None:
        """The exact expiry of ``key`` in ms since the epoch, or None if it has none.

        The value the record carries, not a countdown: Redis's PEXPIRETIME. Any thread.

        Raises:
            KeyError: the key is absent or expired.

        Example:
            >>> db.put(b"s", b"x", ttl=30); db.expire_at_ms(b"s") > 0
            True
        """
        key = as_bytes(key, "key")
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
        an access deletes them); ``len(db)`` counts only the visible ones, walking
        the keys with a TTL. Any thread.

        Example:
            >>> db.stored_keys() >= len(db)
            True
        """
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
        expire_cycle() every 100 ms. One writer thread at a time.

        Raises:
            ValueError: ``limit`` is not positive.

        Example:
            >>> db.put(b"s", b"x", ttl=0.001); time.sleep(0.01); db.expire_sample()
            1
        """
        if limit <= 0:
            raise ValueError("limit must be > 0")
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            return reclaim(self._kd, int(self._clock() * 1000), limit)[1]

    def expire_cycle(self, budget_ms: float = 25.0) -> int:
        """Redis's active expiry cycle: rounds of 20 keys (expire_sample) repeated
        while more than 25% of a round was expired, for at most ``budget_ms``.
        Returns how many keys were reclaimed. The lock is taken per round, so
        writes interleave. One writer thread at a time.

        Example:
            >>> db.expire_cycle(budget_ms=5)
            0
        """
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
        s = self._kd.sampler
        expires = len(self._kd.expiry)
        return {
            "expires": expires,
            "expired_keys": s.expired,
            "avg_ttl_ms": s.avg_ttl_ms if expires else 0,
        }
