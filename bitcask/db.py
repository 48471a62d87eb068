"""The Bitcask class: the store's public face, its read path, stats and close.

Strategy (invariants):
- The writes (put, delete, batches, commit/watch, set/incr/expire/...) are the
  stateless mixin ``WriteMethods`` (bitcask/_db_writes.py) and the expiry API
  (expire_at_ms, stored_keys, expire_sample/cycle, expiry_stats) the stateless
  mixin ``ExpiryMethods`` (bitcask/_db_expiry.py); ``Bitcask`` inherits both and
  holds every attribute they use, so one class is still the whole public API.
  The dict methods (values, pop, setdefault, update, popitem) are a third such
  mixin, ``MappingMethods`` (bitcask/_db_mapping.py).
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
- fork(): the child of a process with an open store shares its files, its active
  file's mapping and its directory lock, but not its threads. A write there would
  land at the parent's offset, and a close would seal (truncate) the parent's
  active file and unlock the store under it. So in the child (``_inherit``, run by
  an ``os.register_at_fork`` hook over ``_OPEN``) the store reads the state of the
  fork and refuses every write with ReadOnlyError, and close() only lets go of the
  child's own references. Nothing is checked on the put/get path: the child's
  ``writer`` is replaced.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar, cast, overload
from zlib import crc32

from ._db_expiry import ExpiryMethods
from ._db_mapping import MappingMethods
from ._db_writes import WriteMethods
from ._expiry import count_visible
from ._files import FileTable
from ._group import Watches
from ._keydir import FID_SHIFT, Keydir
from ._pins import Pins
from ._record import HEADER_SIZE, as_bytes, as_keys
from ._recovery import RecoveryReport
from ._writer import Writer
from .backup import run_backup
from .errors import ReadOnlyError, StoreClosedError
from .merge import MergeReport, Merges, run_merge
from .options import Options

__all__ = ["Bitcask"]

# The header fields get() needs: crc, flags, expiry, key_len (bytes 0..24 of the 29-byte
# header; the timestamp is skipped and val_len follows from the keydir's record size).
_unpack_check = struct.Struct(">IB8xQI").unpack_from
_pread = os.pread
_T = TypeVar("_T")

# Every open store of this process, for the fork hook (weak: never keeps one alive).
_OPEN: weakref.WeakSet[Bitcask] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_OPEN):
        db._inherit()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Moved(Exception):
    """get_many: a location's file left the table (a merge swap); read again."""


class Bitcask(WriteMethods, ExpiryMethods, MappingMethods):
    """An open store. Create with ``bitcask.open(path, ...)``.

    Keys and values are bytes; a str is taken as its UTF-8 bytes and a bytearray or
    memoryview as a copy of its bytes (every method alike); reads return bytes.
    Anything else is a TypeError; a str that UTF-8 cannot encode (a lone surrogate)
    a ValueError (UnicodeEncodeError).

    Thread safety: any method from any thread, at the same time as any other
    (tests/bitcask/test_threads_contract.py). The store's write lock serializes
    the writes: each applies whole, in the order they take the lock (a sequence
    that must not interleave with other threads' writes goes in one write_batch or
    commit). Reads take no lock and run beside the writes and a merge; ``merge()``
    and ``backup()`` may run in a worker thread while writes and reads go on. A
    call running when close() starts completes or raises StoreClosedError, as
    every later call does.

    Interrupts (KeyboardInterrupt, a signal handler's exception) inside a write:
    the write is taken back and the store goes on, or, if it came after the write
    reached the file, writes stop (ReadOnlyError, ``readonly_reason`` says why)
    until the store is reopened, which then has the write.

    fork(): in a child process the store reads the state at the fork and refuses
    writes (ReadOnlyError); its close() leaves the parent's files and lock alone.
    Another process reads beside the writer with ``bitcask.open(path,
    readonly=True)``; only one process at a time writes (StoreLockedError).

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
        lock: threading.RLock,
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
        self._opener = os.getpid()
        self._kbytes = (0, 0)  # (keys, keydir bytes) of the last estimate: stats()
        _OPEN.add(self)

    # ------------------------------------------------------------------ reads

    @overload
    def get(self, key: bytes | str) -> bytes | None: ...
    @overload
    def get(self, key: bytes | str, default: _T) -> bytes | _T: ...

    def get(self, key: bytes | str, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` (None) if absent or expired,
        as dict.get does.

        Thread safety: any thread, concurrently with the writer and a merge.

        Raises:
            CorruptRecordError: the stored record fails its CRC or key check.
            StoreClosedError: the store is closed.

        Example:
            >>> db.get(b"user:1"), db.get(b"user:9", b"")
            (b'alice', b'')
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        loc = self._kget(key)
        if loc is None:
            if self._closed:  # the keydir outlives close(): absent is no answer then
                raise StoreClosedError("store is closed")
            return default
        # Literals, not the named constants, on this path (LOAD_CONST is cheaper: 9,774
        # against 9,927 instructions per get under callgrind, 20,000 gets of 100 B
        # values; bench/embedded.py's get column): 68 = FID_SHIFT, 0xFFFFFFFFF =
        # OFF_MASK, 0xFFFFFFFF = SIZE_MASK (tests/bitcask/test_shape.py ties them).
        entry = self._mget(loc >> 68)
        if entry is None:
            value = self._get_retry(key)
            return default if value is None else value
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
            return default
        return body[25 + kl :]

    def get_many(self, keys: Iterable[bytes | str]) -> list[bytes | None]:
        """The values of ``keys`` (None: absent or expired) as of one instant: a
        batch written meanwhile is seen whole or not at all (Redis's MGET). Any thread.

        The keydir is read in one C call, which no write can split (the writer
        changes it in one call per write: bitcask/_publish.py), then each record at
        the location read; a merge moving a file away takes the snapshot again.

        Example:
            >>> db.get_many([b"user:1", b"user:9"])
            [b'alice', None]
        """
        ks = as_keys(keys)
        for _ in range(100):
            if self._closed:
                raise StoreClosedError("store is closed")
            locs = list(map(self._kget, ks))
            now_ms = self._clock() * 1000
            try:
                return [
                    None if loc is None else self._value_at(key, loc, now_ms)
                    for key, loc in zip(ks, locs, strict=True)
                ]
            except _Moved:
                time.sleep(0.0001)
        raise self._health.corrupt("get_many: a merge kept moving the files of its keys")

    def value_bytes(self, keys: Iterable[bytes | str]) -> int:
        """The bytes get_many(``keys``) would return now, from the keydir alone (no
        record is read): each present, unexpired key's value length, once per time
        it is named. A server bounds a reply with it before building it. Any thread.

        Example:
            >>> db.value_bytes([b"user:1", b"user:1", b"user:9"])
            10
        """
        if self._closed:
            raise StoreClosedError("store is closed")
        kget, expiry = self._kget, self._kd.expiry
        now_ms = self._clock() * 1000
        total = 0
        for key in as_keys(keys):
            loc = kget(key)
            if loc is None:
                continue
            exp = expiry.get(key) if expiry else None
            if exp is None or exp > now_ms:
                total += (loc & 0xFFFFFFFF) - HEADER_SIZE - len(key)
        return total

    def _value_at(self, key: bytes, loc: int, now_ms: float) -> bytes | None:
        # get()'s record read at a known location; raises _Moved when a merge swapped
        # the file away. get keeps its own copy inline: calling this from get cost
        # 10,551 instructions per get against 10,069 inline (callgrind, 20,000 gets of
        # 100 B, PYTHONHASHSEED=0; bench/embedded.py's get column).
        # test_get_many_answers_as_get holds the two copies to the same answers.
        entry = self._mget(loc >> FID_SHIFT)
        if entry is None:
            raise _Moved
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
                f"record of {key!r} at file {loc >> FID_SHIFT} offset {off} fails its check"
            )
        if exp and exp <= now_ms:
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

        Raises:
            StoreClosedError: the store is closed.

        Example:
            >>> b"user:1" in db
            True
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if self._closed:
            raise StoreClosedError("store is closed")
        if key not in self._kmap:
            return False
        exp = self._kd.expiry.get(key) if self._kd.expiry else None
        return exp is None or exp > self._clock() * 1000

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
        if limit.__class__ is not int and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int, not {limit!r}")
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if self._closed:
            raise StoreClosedError("store is closed")
        prefix = as_bytes(prefix, "prefix")
        after_b = None if after is None else as_bytes(after, "after")
        return self._kd.scan(prefix, after_b, limit, int(self._clock() * 1000))

    def ttl(self, key: bytes | str) -> float | None:
        """Seconds until ``key`` expires, or None if it has no TTL. Any thread.

        Raises:
            KeyError: the key is absent or expired.
            StoreClosedError: the store is closed.

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

    def _check_not_inherited(self) -> None:
        # merge() and backup() reach the writer through ``merges``: refuse them here
        # in a child of fork() (see _inherit).
        if isinstance(self.writer, _InheritedWriter):
            raise ReadOnlyError(f"store is read-only: {self.writer.readonly_reason}")

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
        self._check_not_inherited()
        run_backup(self.merges, os.fspath(dest))

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

    def close(self) -> None:
        """Flush, write the active file's hint, release the lock. Idempotent.

        Any thread, even while others are mid-call (they finish or get
        StoreClosedError); a running merge is abandoned (the old files stay
        authoritative) or, if already swapping, finished first. A close()
        interrupted part way (KeyboardInterrupt) is finished by calling it again.

        Example:
            >>> db = bitcask.open("./data"); db.put(b"k", b"v"); db.close()
        """
        writer = self.writer
        if self._closed:
            return
        if os.getpid() != self._opener:
            # A child of fork(): the files, the lock and the threads are the parent's.
            writer.closing = True
            self._closed = True
            self.files.abandon_active()  # closes this process's descriptor, nothing more
            self.files.close()
            self._release_lock()  # DirLock: closes the descriptor, keeps the parent's lock
            _OPEN.discard(self)
            return
        # Done only once it is over: a close() interrupted part way (a second Ctrl-C
        # at its fsync) is finished by the next close(). It used to return at once,
        # leaving the store locked for the rest of the process.
        writer.stop_threads()
        # A merge in another thread notices ``closing`` and abandons its copy, or
        # finishes its swap; either way wait so it never touches a closed store.
        merge_paused = self.merges.lock.acquire(timeout=60)
        try:
            writer.close_files(StoreClosedError("store is closed"))
            with self._lock:
                self._closed = True
                self.files.close()
                self._release_lock()
        finally:
            if merge_paused:
                self.merges.lock.release()
        _OPEN.discard(self)

    def _inherit(self) -> None:
        """In a child of fork() (the ``os.register_at_fork`` hook): serve reads of the
        state at the fork, refuse writes, and drop locks a parent thread may have held."""
        self._kd.after_fork()
        self._lock = threading.RLock()
        if self._readonly or self.writer.closing:
            return
        reason = (
            f"inherited across fork() from process {self._opener}, which owns its files "
            "and writes them; this process reads the state at the fork"
        )
        # cast: the one stand-in for the writer; Bitcask only calls what it defines.
        self.writer = cast(Writer, _InheritedWriter(self.writer, reason))

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
        if self._closed:  # ``with db:`` again after close(): say so here, not at a call
            raise StoreClosedError("store is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:  # the keys left in memory are no answer any more
            return f"<Bitcask {self.path!r} closed>"
        mode = "readonly" if self._readonly else self.options.sync
        return f"<Bitcask {self.path!r} {mode} keys={len(self._kmap)}>"


class _InheritedWriter:
    """The writer of a store in a child of fork(): every write is refused (ReadOnlyError);
    sync() does nothing, as in a readonly store. See ``Bitcask._inherit``."""

    readonly = True
    last_task_error: str | None = None

    def __init__(self, parent: Writer, reason: str) -> None:
        self.readonly_reason = reason
        self.closing = False
        self.path = parent.path
        self.options = parent.options
        self.health = parent.health
        self.lock = threading.RLock()  # a parent thread may have held the store's
        self.watches = Watches()

    def _refuse(self, *args: object, **kwargs: object) -> Any:
        raise ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    put = delete = write_batch = write_group = commit = watch = write_planned = _refuse
    check_writable = rotate = _refuse

    def sync(self) -> None:
        """Nothing to make durable in this process."""
