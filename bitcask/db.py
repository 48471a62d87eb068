"""The Bitcask class: the store's public face, the parts it composes, its read path.

Strategy (invariants):
- ``Bitcask`` is one class, the whole public API, assembled from stateless mixins
  that each hold one concern and no attribute of their own: the writes (put,
  delete, batches, commit/watch, set/incr/expire/...: ``WriteMethods``,
  bitcask/_db_writes.py), the expiry API (``ExpiryMethods``, bitcask/_db_expiry.py),
  the dict methods (values, pop, setdefault, update, popitem: ``MappingMethods``,
  bitcask/_db_mapping.py), the key-space views (len, iteration, keys, items, scan:
  ``ScanMethods``, bitcask/_db_scan.py), the whole-store methods (merge, backup,
  stats, disk health: ``AdminMethods``, bitcask/_db_admin.py) and its life in a
  process (close, fork: ``LifecycleMethods``, bitcask/_db_lifecycle.py). This file
  holds every attribute they use and the read path itself.
- ``Bitcask`` composes the parts of an open store, each the one owner of its
  state: the keydir (``keydir``), the file table (``files``), the writer
  (``writer``, every write) and the merge coordination (``merge.Merges``). It
  forwards writes to the writer and serves reads itself. ``_store.open_store``
  builds the parts in one linear sequence.
- Readers take no lock: they read the keydir with one ``dict.get`` and the file
  table with one ``dict.get`` (both atomic under the GIL), then slice an mmap, or
  pread past the end of the active file's mapping.
- Every get checks the record CRC and that the stored key is the requested key; a
  mismatch raises CorruptRecordError, never returns a value. A location whose file
  left the table (a merge swapped it) is looked up again.
- The read path is measured (bench/embedded.py's get column, bench/request_path.py
  --opcodes): ``get`` keeps its lookups bound in ``__init__``, literal masks and the
  record check inline, and stays a method of this class (one call per get).
  ``get_many`` keeps its own copy of the check (``_value_at``); a test holds the two
  to the same answers.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar, overload

from ._db_admin import AdminMethods
from ._db_expiry import ExpiryMethods
from ._db_lifecycle import LifecycleMethods, weak_get
from ._db_mapping import MappingMethods
from ._db_scan import ScanMethods
from ._db_writes import WriteMethods
from ._files import FileTable
from ._group import Watches
from ._keydir import FID_SHIFT, Keydir
from ._pins import Pins
from ._record import HEADER_SIZE, as_bytes, as_keys, crc32, shown_key
from ._recovery import RecoveryReport
from ._writer import Writer
from .errors import StoreClosedError
from .merge import Merges
from .options import Options

__all__ = ["Bitcask"]

# The header fields get() needs: crc, flags, expiry, key_len (bytes 0..24 of the 29-byte
# header; the timestamp is skipped and val_len follows from the keydir's record size).
_unpack_check = struct.Struct(">IB8xQI").unpack_from
_pread = os.pread
_T = TypeVar("_T")


class _Moved(Exception):
    """get_many: a location's file left the table (a merge swap); read again."""


class Bitcask(
    WriteMethods, ExpiryMethods, MappingMethods, ScanMethods, AdminMethods, LifecycleMethods
):
    """An open store. Create with ``bitcask.open(path, ...)``.

    Keys and values are bytes; a str is taken as its UTF-8 bytes and a bytearray or
    memoryview as a copy of its bytes (every method alike); reads return bytes.
    Anything else is a TypeError; a str that UTF-8 cannot encode (a lone surrogate)
    a ValueError naming the argument (not a UnicodeEncodeError).

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
            read=weak_get(self),  # weak: the writer's threads never keep the store open
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
        self._kbytes = (0, 0)  # (keys, keydir bytes) of the last estimate: stats()
        self._register()  # open in this process (_closed, _opener; the fork hook)

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
        # The bound lookups through locals: ``self._kget(key)`` is a LOAD_METHOD that
        # does not specialise on an instance attribute (-225 instructions per get).
        kget = self._kget
        loc = kget(key)
        if loc is None:
            if self._closed:  # the keydir outlives close(): absent is no answer then
                raise StoreClosedError("store is closed")
            return default
        # Literals, not the named constants, on this path (LOAD_CONST is cheaper: 9,774
        # against 9,927 instructions per get under callgrind, 20,000 gets of 100 B
        # values; bench/embedded.py's get column): 68 = FID_SHIFT, 0xFFFFFFFFF =
        # OFF_MASK, 0xFFFFFFFF = SIZE_MASK (tests/bitcask/test_shape.py ties them).
        mget = self._mget
        entry = mget(loc >> 68)
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
                raise self._health.corrupt(f"record of {shown_key(key)} is truncated")
            crc, flags, exp, kl = _unpack_check(rec)
            body = rec[4:]
        # The record check (_value_at has the same lines): the CRC, the stored key
        # compared in one slice (a CRC-valid key_len fits its record, and the last
        # term refuses one that runs past it), not a tombstone. The CRC is the
        # engine's one (bitcask/_record.py).
        kl += 25  # where the value starts in body
        value = body[kl:]
        if crc32(body) != crc or body[25:kl] != key or flags & 1 or (not value and kl != len(body)):
            raise self._health.corrupt(
                f"record of {shown_key(key)} at file {loc >> 68} offset {off} fails its check"
            )
        if exp and exp <= self._clock() * 1000:
            return default
        return value

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
        mget = self._mget  # a local: see get
        entry = mget(loc >> FID_SHIFT)
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
                raise self._health.corrupt(f"record of {shown_key(key)} is truncated")
            crc, flags, exp, kl = _unpack_check(rec)
            body = rec[4:]
        kl += 25
        value = body[kl:]
        if crc32(body) != crc or body[25:kl] != key or flags & 1 or (not value and kl != len(body)):
            raise self._health.corrupt(
                f"record of {shown_key(key)} at file {loc >> FID_SHIFT} offset {off} fails its check"
            )
        if exp and exp <= now_ms:
            return None
        return value

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
            f"record of {shown_key(key)} names file {loc and loc >> FID_SHIFT}, which is gone"
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

    # ------------------------------------------------------------------ parts

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
