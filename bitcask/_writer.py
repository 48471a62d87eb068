"""The write path and the file table, shared by every writing operation.

Strategy (invariants):
- One writer at a time: ``_lock`` serialises every mutation of files and of the
  keydir (puts, batches, rotation, merge swaps, the interval syncer).
- A write is encoded outside the lock, appended with one ``_io.write`` into the
  active file's shared mapping (bitcask/_active.py: a memory copy into the page
  cache, no user-space buffer, so it survives SIGKILL once ``put`` returns), fsynced
  per policy, and only then published in the keydir: readers never see a write
  before it is as durable as promised.
- The file table ``_maps`` maps file id -> (mmap, mapped_length, reader). Entries
  are replaced, never mutated; mmaps are never closed while the store is open
  (dropping the last reference unmaps), so a reader mid-slice is always safe. The
  active file's entry (its own writable mapping) is republished every
  ``_REMAP_STEP`` bytes; readers pread anything past it.
- A failed write or fsync truncates back to the last good offset (best effort)
  and stops writes, as ``_health`` tells the two apart: after a failed write they
  resume by themselves once a probe shows the disk takes writes again; after a
  failed fsync, only after a restart. Out of descriptors is no disk fault: that
  write fails alone. Reads go on throughout.
- Sealed files get their hint in the background worker; the hint is renamed into
  place under the lock only if the file still exists (a merge may have removed it).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from itertools import accumulate, repeat
from mmap import mmap
from operator import lshift as _lshift
from operator import or_ as _or
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, BinaryIO
from zlib import crc32

from . import _io
from ._active import ActiveFile
from ._datafile import (
    FILE_HEADER_SIZE,
    ScanIssues,
    data_name,
    hint_name,
    map_file,
    scan,
)
from ._health import DiskHealth, is_transient
from ._hint import build_hint, write_hint
from ._keydir import FID_SHIFT, MAX_FILE_ID, SIZE_MASK, Keydir
from ._planned import Planned, PlannedWrites
from ._record import (
    BATCH_BEGIN,
    BATCH_COMMIT,
    BODY_HEADER,
    CRC,
    HEADER_SIZE,
    IN_BATCH,
    TTL,
    as_bytes,
    encode_marker,
    encode_tombstone,
)
from ._recovery import RecoveryReport
from ._rmw import KeyBudget, Op, Watches, batch_effect
from .errors import (
    BitcaskError,
    KeyTooLargeError,
    ReadOnlyError,
    StoreFullError,
    StoreIOError,
    ValueTooLargeError,
)
from .options import Options

if TYPE_CHECKING:
    from .batch import Batch
    from .snapshot import Pins

__all__ = ["FileEntry", "Writer", "as_bytes", "fsync_dir"]

log = logging.getLogger("bitcask")

# Republish the active file's entry after this many appended bytes (one tuple, no
# mmap call: the entry names the active file's own mapping); at most this much recent
# data is read with pread.
_REMAP_STEP = 1 << 16
# The latest expiry a record may carry, in ms since the epoch: a signed 64-bit
# integer, as Redis bounds its expiries (the field itself is u64).
MAX_EXPIRY_MS = (1 << 63) - 1
_MAX_BATCH_BYTES = 1 << 32
_pack_body = BODY_HEADER.pack
_pack_crc = CRC.pack
_time_ns = time.time_ns

FileEntry = tuple[mmap | None, int, BinaryIO | None]


def _expiry_ms(clock: Callable[[], float], ttl: object) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds, not {ttl!r}")
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    exp = int((clock() + ttl) * 1000) or 1
    if exp > MAX_EXPIRY_MS:
        raise ValueError(
            f"ttl {ttl!r} puts the expiry past the largest one stored ({MAX_EXPIRY_MS} ms)"
        )
    return exp


class Writer(PlannedWrites):
    """The state of an open store and its writing half; ``Bitcask`` adds the rest.

    The attributes are set by ``_store.open_store``.
    """

    path: str
    options: Options
    recovery: RecoveryReport
    readonly_reason: str | None
    _clock: Callable[[], float]
    _kd: Keydir
    _kmap: dict[bytes, int]
    _kget: Callable[[bytes], int | None]
    _mget: Callable[[int], FileEntry | None]
    _live: dict[int, int]
    _expiry: dict[bytes, int]
    _new_keys: list[bytes]
    _maps: dict[int, FileEntry]
    _sizes: dict[int, int]
    _unloadable: set[int]  # files not to merge: unreadable at open, or left out by a merge
    _lock: threading.Lock
    _merge_lock: threading.Lock
    _blocked: BitcaskError | None
    _readonly: bool
    _active_id: int
    _base: int
    _active: ActiveFile | None = None  # the appendable file (its fd is also _wfd)
    _wfd: int
    _offset: int
    _mapped: int
    _reader: BinaryIO | None
    _next_id: int
    _sync_always: bool
    _max_key: int
    _max_value: int
    _max_file: int
    _max_keys: int  # 0: no limit
    _dirty: bool
    _closing: bool
    _merging: bool
    _merges: int
    _last_merge_error: str | None
    _tasks: SimpleQueue[Callable[[], None] | None]
    _threads: list[threading.Thread]
    _stop: threading.Event
    _release_lock: Callable[[], None]
    _health: DiskHealth
    _watches: Watches
    _pins: Pins  # snapshots: files no merge may delete (bitcask/snapshot.py)

    # ----------------------------------------------------------------- writes

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
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if value.__class__ is not bytes:
            value = as_bytes(value, "value")
        kl = len(key)
        vl = len(value)
        if kl > self._max_key:
            raise KeyTooLargeError(f"key of {kl} bytes exceeds max_key_size {self._max_key}")
        if vl > self._max_value:
            raise ValueTooLargeError(
                f"value of {vl} bytes exceeds max_value_size {self._max_value}"
            )
        if ttl is None:
            flags = exp = 0
        else:
            flags = TTL
            exp = _expiry_ms(self._clock, ttl)
        body = _pack_body(flags, _time_ns() // 1000, exp, kl, vl) + key + value
        rec = _pack_crc(crc32(body)) + body
        size = len(rec)
        lock = self._lock
        lock.acquire()
        try:
            if self._blocked is not None:
                raise self._refuse()
            if self._max_keys and len(self._kmap) >= self._max_keys and key not in self._kmap:
                raise self._full()
            off = self._offset
            if off + size > self._max_file and off > FILE_HEADER_SIZE:
                self._rotate()
                off = self._offset
            if self._sync_always:
                self._append(rec, off, True)
            else:  # _append without the fsync, inlined: bench/embedded.py put, ~0.1 us/op
                try:
                    _io.write(self._active, rec)  # type: ignore[arg-type]
                except OSError as exc:
                    raise self._fail(exc, off) from exc
            self._offset = end = off + size
            self._dirty = True
            kmap = self._kmap
            old = kmap.get(key)
            kmap[key] = self._base | (off << 32) | size
            live = self._live
            live[self._active_id] += size
            if old is None:
                if self._kd.indexed:  # read after the insert: see _keydir
                    self._new_keys.append(key)
            else:
                live[old >> FID_SHIFT] -= old & SIZE_MASK
            if exp:
                self._expiry[key] = exp
            elif self._expiry:
                self._expiry.pop(key, None)
            if self._watches.counts:  # after the keydir: see _apply
                self._watches.bump((key,))
            if end - self._mapped >= _REMAP_STEP:
                self._remap_active()
        finally:
            lock.release()

    def __setitem__(self, key: bytes | str, value: bytes | str) -> None:
        """``db[key] = value``: put() without a TTL. One writer thread at a time.

        Example:
            >>> db[b"user:1"] = b"alice"
        """
        self.put(key, value)

    def __delitem__(self, key: bytes | str) -> None:
        """``del db[key]``: delete(), raising KeyError when absent. One writer at a time.

        Example:
            >>> del db[b"user:1"]
        """
        if not self.delete(key):
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
        return bool(self.write_batch([("delete", key)], _single=True)[0])

    def write_batch(
        self, ops: Sequence[Sequence[Any]], sync: bool | None = None, *, _single: bool = False
    ) -> list[object]:
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
        ts = _time_ns() // 1000
        try:
            keys, recs, exps = self._encode_ops(ops, 0 if _single else IN_BATCH, ts)
        except Planned:
            done = self._planned_one(ops, None, sync)
            assert done is not None  # None only answers a watch
            return done
        lock = self._lock
        lock.acquire()
        try:
            if self._blocked is not None:
                raise self._refuse()
            if self._max_keys and not KeyBudget(self._kmap, self._max_keys).fits(
                *batch_effect(keys, exps)
            ):
                raise self._full()
            return self._apply(keys, recs, exps, sync, [(len(keys), not _single)], ts)
        finally:
            lock.release()

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
        ts = _time_ns() // 1000
        out: list[list[object] | BaseException] = []
        keys: list[bytes] = []
        recs: list[bytes] = []
        exps: list[int] = []
        segs: list[tuple[int, bool]] = []
        if all(len(ops) == 1 for ops in batches):
            # The common group (single writes from many connections, as bench/server.py
            # sends them) in one encoding pass instead of one per batch. In-process,
            # 1,000 single puts per group, best of 9, four alternating runs: 1.99-3.02
            # us/op without it, 1.28-1.97 with it. Should one op be refused, the
            # per-batch loop below redoes the group so that only its batch fails.
            try:
                keys, recs, exps = self._encode_ops([ops[0] for ops in batches], 0, ts)
                segs = [(1, False)] * len(keys)
                out = [[] for _ in batches]
            except Planned:
                planned = self.write_planned(batches, [None] * len(batches), sync)
                return [[] if r is None else r for r in planned]  # None only answers a watch
            except (ValueError, TypeError):
                pass
        for ops in batches if not segs else ():
            atomic = len(ops) > 1
            try:
                k, r, e = self._encode_ops(ops, IN_BATCH if atomic else 0, ts)
            except Planned:  # an Op: the whole group is decided under the lock
                planned = self.write_planned(batches, [None] * len(batches), sync)
                return [[] if r is None else r for r in planned]  # None only answers a watch
            except (ValueError, TypeError) as exc:
                out.append(exc)
                continue
            keys += k
            recs += r
            exps += e
            segs.append((len(k), atomic))
            out.append([])
        lock = self._lock
        lock.acquire()
        try:
            if self._blocked is not None:
                raise self._refuse()
            if self._max_keys:
                keys, recs, exps, segs = self._admit(keys, recs, exps, segs, out)
            results = self._apply(keys, recs, exps, sync, segs, ts) if segs else []
        finally:
            lock.release()
        pos = 0
        sizes = iter(segs)
        for i, entry in enumerate(out):
            if isinstance(entry, list):
                n = next(sizes)[0]
                out[i] = results[pos : pos + n]
                pos += n
        return out

    def _now_us(self) -> int:
        return _time_ns() // 1000

    def _expiry_of(self, ttl: object) -> int:
        return _expiry_ms(self._clock, ttl)

    def _encode_ops(
        self, ops: Sequence[Sequence[Any]], inner: int, ts: int
    ) -> tuple[list[bytes], list[bytes], list[int]]:
        # Validate and encode ``ops``: keys, records (b"" for a delete, whose
        # tombstone is encoded once its target is known) and expiries (0: none; -1
        # marks a delete). Raises on the first bad op; nothing is written.
        max_key = self._max_key
        max_value = self._max_value
        pack_body = _pack_body
        pack_crc = _pack_crc
        keys: list[bytes] = []
        recs: list[bytes] = []
        exps: list[int] = []
        append_key = keys.append
        append_rec = recs.append
        append_exp = exps.append
        for op in ops:
            if op.__class__ is not tuple and not isinstance(op, list):
                if isinstance(op, Op):
                    raise Planned
                raise ValueError(f"batch op must be a tuple, not {op!r}")
            n = len(op)
            if n == 4:
                kind, key, value, ttl = op
            elif n == 3:
                kind, key, value = op
                ttl = None
            elif n == 2:
                kind, key = op
            else:
                raise ValueError(f"unknown batch op {op!r}")
            if key.__class__ is not bytes:
                key = as_bytes(key, "key")
            kl = len(key)
            if kl > max_key:
                raise KeyTooLargeError(f"key of {kl} bytes exceeds max_key_size {max_key}")
            if (kind == "put" and n != 2) or (kind == "put_at" and n == 4):
                if value.__class__ is not bytes:
                    value = as_bytes(value, "value")
                vl = len(value)
                if vl > max_value:
                    raise ValueTooLargeError(
                        f"value of {vl} bytes exceeds max_value_size {max_value}"
                    )
                if ttl is None or (kind == "put_at" and not ttl):
                    exp = 0
                    body = pack_body(inner, ts, 0, kl, vl) + key + value
                else:
                    # "put_at" (planned writes) carries the expiry itself, in ms
                    exp = ttl if kind == "put_at" else _expiry_ms(self._clock, ttl)
                    body = pack_body(inner | TTL, ts, exp, kl, vl) + key + value
                append_rec(pack_crc(crc32(body)) + body)
            elif kind == "delete" and n == 2:
                exp = -1
                append_rec(b"")
            else:
                raise ValueError(f"unknown batch op {op!r}")
            append_key(key)
            append_exp(exp)
        return keys, recs, exps

    def _apply(
        self,
        keys: list[bytes],
        recs: list[bytes],
        exps: list[int],
        sync: bool | None,
        segs: list[tuple[int, bool]],
        ts: int,
    ) -> list[object]:
        # Caller holds _lock. ``segs`` cuts the ops into batches: (op count, atomic);
        # an atomic one is framed by BEGIN/COMMIT markers, the others are plain
        # records. Resolve deletes against the keydir (and earlier ops), write
        # everything at once, then publish in the keydir.
        kmap = self._kmap
        results: list[object] = [None] * len(keys)
        targets: dict[int, int] = {}  # op index -> target file (-1: this write's file)
        if -1 in exps:
            now_ms = int(self._clock() * 1000)
            state: dict[bytes, bool] = {}  # key -> present after the ops so far
            for i, key in enumerate(keys):
                if exps[i] >= 0:
                    state[key] = True
                    continue
                present = state.get(key)
                if present is None:
                    existed = self._kd.visible(key, now_ms)
                    loc = kmap.get(key)
                    if loc is not None:
                        targets[i] = loc >> FID_SHIFT
                else:
                    existed = present
                    if present:
                        targets[i] = -1
                results[i] = existed
                state[key] = False
            keep = [i for i, e in enumerate(exps) if e >= 0 or i in targets]
            if len(keep) != len(keys):
                # A delete of an absent key writes nothing; its batch shrinks.
                seg_of = [j for j, (n, _) in enumerate(segs) for _ in range(n)]
                counts = [0] * len(segs)
                for i in keep:
                    counts[seg_of[i]] += 1
                segs = [(c, atomic) for c, (_, atomic) in zip(counts, segs, strict=True) if c]
                keys = [keys[i] for i in keep]
                recs = [recs[i] for i in keep]
                exps = [exps[i] for i in keep]
                targets = {j: targets[i] for j, i in enumerate(keep) if i in targets}
            if not keys:
                return results
        marked = sum(atomic for _, atomic in segs)
        total = (
            sum(map(len, recs))
            + len(targets) * (HEADER_SIZE + 4)
            + sum(len(keys[i]) for i in targets)
            + marked * 2 * (HEADER_SIZE + 4)
        )
        if total > _MAX_BATCH_BYTES:
            raise ValueTooLargeError(f"batch of {total} bytes is too large")
        off = self._offset
        if off + total > self._max_file and off > FILE_HEADER_SIZE:
            self._rotate()
            off = self._offset
        aid = self._active_id
        if targets:
            atomic_of = [atomic for count, atomic in segs for _ in range(count)]
            for i, target in targets.items():
                inner = IN_BATCH if atomic_of[i] else 0
                recs[i] = encode_tombstone(keys[i], aid if target < 0 else target, ts, inner)
        if not marked:
            buf = recs[0] if len(recs) == 1 else b"".join(recs)
            positions: list[int] | None = None
        else:
            parts: list[bytes] = []
            positions = []
            pos = off
            first = 0
            for count, atomic in segs:
                if atomic:
                    begin = encode_marker(BATCH_BEGIN, count, ts)
                    parts.append(begin)
                    pos += len(begin)
                for rec in recs[first : first + count]:
                    positions.append(pos)
                    pos += len(rec)
                parts += recs[first : first + count]
                if atomic:
                    commit = encode_marker(BATCH_COMMIT, count, ts)
                    parts.append(commit)
                    pos += len(commit)
                first += count
            buf = b"".join(parts)
        self._append(buf, off, sync is True or (sync is None and self._sync_always))
        self._offset = off + len(buf)
        self._dirty = True
        # Watches count a write only once readers can see it: a watch taken in
        # between would otherwise pair a counted write with the old value it read.
        if not targets and not any(exps) and (positions is None or len(segs) == 1):
            self._publish_puts(keys, recs, positions[0] if positions else off)
            if self._watches.counts:
                self._watches.bump(keys)
            return results
        if positions is None:
            positions = list(accumulate(map(len, recs[:-1]), initial=off))
        live = self._live
        expiry = self._expiry
        new_keys = self._new_keys
        kd = self._kd
        base = self._base
        added = 0
        for key, rec, exp, pos in zip(keys, recs, exps, positions, strict=True):
            size = len(rec)
            old = kmap.get(key)
            if old is not None:
                live[old >> FID_SHIFT] -= old & SIZE_MASK
            if exp < 0:
                if old is not None:
                    del kmap[key]
                    kd.note_deleted()
                if expiry:
                    expiry.pop(key, None)
            else:
                kmap[key] = base | (pos << 32) | size
                added += size
                if old is None and kd.indexed:  # read after the insert: see _keydir
                    new_keys.append(key)
                if exp:
                    expiry[key] = exp
                elif expiry:
                    expiry.pop(key, None)
        live[aid] += added
        if self._watches.counts:
            self._watches.bump(keys)
        if self._offset - self._mapped >= _REMAP_STEP:
            self._remap_active()
        return results

    def _publish_puts(self, keys: list[bytes], recs: list[bytes], pos: int) -> None:
        # Caller holds _lock; the records are written. The common batch (puts without
        # a TTL) in C-level passes: locations from running sums of the record sizes,
        # then one dict.setdefault per key, which inserts a new key and returns the
        # location passed (the same object), or returns what an existing key (or an
        # earlier op of this batch) held. Only those keys take the slow fix-up, which
        # reads the current entry so a key repeated in the batch is accounted once.
        kmap = self._kmap
        sizes = list(map(len, recs))
        hi = self._base | (pos << 32)
        locs = list(map(_or, accumulate(map(_lshift, sizes, repeat(32)), initial=hi), sizes))
        found = list(map(kmap.setdefault, keys, locs))
        live = self._live
        live[self._active_id] += sum(sizes)
        if found != locs:
            for key, loc, old in zip(keys, locs, found, strict=True):
                if old is not loc:
                    cur = kmap[key]
                    kmap[key] = loc
                    live[cur >> FID_SHIFT] -= cur & SIZE_MASK
        expiry = self._expiry
        if expiry:
            for key in keys:
                expiry.pop(key, None)
        if self._kd.indexed:  # read after the inserts: see _keydir
            self._new_keys.extend(
                [k for k, loc, old in zip(keys, locs, found, strict=True) if old is loc]
            )
        if self._offset - self._mapped >= _REMAP_STEP:
            self._remap_active()

    def batch(self) -> Batch:
        """Collect puts and deletes, applied atomically by write_batch() on exit.

        Nothing is written if the block raises. One writer thread at a time.

        Example:
            >>> with db.batch() as b:
            ...     b.put(b"a", b"1"); b.delete(b"b")
        """
        from .batch import Batch

        return Batch(self)

    def sync(self) -> None:
        """fsync the active file now, whatever the policy. Any thread (takes the write lock).

        Raises:
            StoreIOError: the fsync failed (the store is now read-only).

        Example:
            >>> db.put(b"k", b"v"); db.sync()  # durable even under sync="never"
        """
        with self._lock:
            if self._readonly or self._wfd < 0:
                return
            try:
                _io.fsync(self._wfd)
            except OSError as exc:
                raise self._fail(exc, self._offset, fsync=True) from exc
            self._dirty = False

    # ------------------------------------------------------ writer internals

    def _check_writable(self) -> None:
        if self._blocked is not None:
            raise self._refuse()

    def _refuse(self) -> BitcaskError:
        # Caller holds _lock and found the store blocked: the error to raise.
        blocked = self._blocked
        assert blocked is not None
        if self._health.state != "ok":
            self._health.refused(blocked)
        return blocked

    def _full(self) -> StoreFullError:
        return StoreFullError(
            f"the store holds max_keys={self._max_keys} keys: new keys are refused "
            "(reads, overwrites and deletes go on)"
        )

    def _admit(
        self,
        keys: list[bytes],
        recs: list[bytes],
        exps: list[int],
        segs: list[tuple[int, bool]],
        out: list[list[object] | BaseException],
    ) -> tuple[list[bytes], list[bytes], list[int], list[tuple[int, bool]]]:
        # Caller holds _lock. Drop the batches max_keys refuses; their entries in
        # ``out`` (the ones still pending, in order) become StoreFullError.
        budget = KeyBudget(self._kmap, self._max_keys)
        pending = iter([i for i, entry in enumerate(out) if isinstance(entry, list)])
        k2: list[bytes] = []
        r2: list[bytes] = []
        e2: list[int] = []
        s2: list[tuple[int, bool]] = []
        first = 0
        for n, atomic in segs:
            i = next(pending)
            ks, es = keys[first : first + n], exps[first : first + n]
            if budget.fits(*batch_effect(ks, es)):
                k2 += ks
                r2 += recs[first : first + n]
                e2 += es
                s2.append((n, atomic))
            else:
                out[i] = self._full()
            first += n
        return k2, r2, e2, s2

    def _append(self, buf: bytes, off: int, fsync: bool) -> None:
        # Caller holds _lock: one write of ``buf`` at ``off``, then the fsync asked for.
        try:
            _io.write(self._active.records, buf)  # type: ignore[union-attr]
        except OSError as exc:
            raise self._fail(exc, off) from exc
        if fsync:
            try:
                _io.fsync(self._wfd)
            except OSError as exc:
                raise self._fail(exc, off, fsync=True) from exc

    def _fail(self, exc: OSError, good_offset: int, *, fsync: bool = False) -> StoreIOError:
        # Caller holds _lock. Cut a partial append, then tell the disk fault apart
        # (see _health): out of descriptors fails this write alone; a failed write
        # refuses writes until a probe succeeds; a failed fsync, until restart.
        if self._active is not None:
            self._active.cut(good_offset)
        reason = f"{type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
        if not fsync and is_transient(exc):
            log.warning("write failed in %s, store stays writable: %s", self.path, reason)
            return StoreIOError(exc.errno or 0, f"write failed, nothing was written: {reason}")
        if fsync:
            self._health.fsync_failed(reason)
            self.readonly_reason = f"fsync failed: {reason}; restart to resume writes"
        else:
            thread = self._health.write_failed(reason, self._resume)
            if thread is not None:
                self._threads.append(thread)
                thread.start()
            self.readonly_reason = f"write failed: {reason}; writes resume once the disk takes them"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        return StoreIOError(exc.errno or 0, f"write failed, store is now read-only: {reason}")

    def _resume(self) -> None:
        """The probe thread saw the disk take a write: writable again (OSError if not)."""
        with self._lock:
            if self._closing or self._health.state != "write_failed":
                return
            if self._wfd < 0:  # the full disk came at start: no active file yet
                fid = self._next_id
                self._wfd, self._reader = self._create_file(fid)
                self._next_id = fid + 1
                self._active_id = fid
                self._base = fid << FID_SHIFT
                self._offset = FILE_HEADER_SIZE
                self._kd.live[fid] = 0
                self._remap_active()
            self._blocked = None
            self.readonly_reason = None
            self._health.healed()

    def _create_file(self, fid: int) -> tuple[int, BinaryIO]:
        # Create file ``fid`` as the active file (self._active, only on success);
        # return its descriptor and a reader.
        if fid > MAX_FILE_ID:
            raise BitcaskError("file ids exhausted (4M files): back up and restore the store")
        path = os.path.join(self.path, data_name(fid))
        durable = self.options.sync != "never"
        active = ActiveFile.create(path, fid, self._max_file, durable)
        try:
            if durable:
                fsync_dir(self.path)
            reader = open(path, "rb", buffering=0)  # noqa: SIM115 (kept open as the reader)
        except BaseException:
            active.discard()  # a retry creates it again (O_EXCL)
            raise
        self._active = active
        return active.fd, reader

    def _seal_active(self) -> None:
        """Truncate the active file to its records and close it (caller holds _lock)."""
        if self._active is not None:
            self._active.seal()
            self._active = None
        self._wfd = -1

    def _rotate(self, reserve: int = 0) -> None:
        """Seal the active file and start the next one (caller holds _lock)."""
        old_id, old_fd, size = self._active_id, self._wfd, self._offset
        old_active, old_reader = self._active, self._reader
        new_id = self._next_id + reserve
        if self.options.sync != "never":
            try:
                _io.fsync(old_fd)
            except OSError as exc:
                raise self._fail(exc, size, fsync=True) from exc
        try:
            fd, reader = self._create_file(new_id)  # reserves its space: ENOSPC is here
        except OSError as exc:
            raise self._fail(exc, size) from exc
        # The new file exists: only now seal the old one (a crash in between leaves
        # two flagged files, whose zero tails recovery trims).
        assert old_active is not None and old_active.fd == old_fd
        old_active.seal()
        try:
            self._maps[old_id] = (map_file(os.path.join(self.path, data_name(old_id))), size, None)
        except OSError:  # out of descriptors: serve the sealed file with pread
            self._maps[old_id] = (None, 0, old_reader)
        self._sizes[old_id] = size
        self._next_id = new_id + 1
        self._active_id = new_id
        self._base = new_id << FID_SHIFT
        self._wfd = fd
        self._offset = FILE_HEADER_SIZE
        self._reader = reader
        self._kd.live[new_id] = 0
        self._remap_active()
        self._dirty = False
        if self.options.hint_files:
            self._tasks.put(lambda: self._write_hint(old_id))
        self._maybe_auto_merge()

    def _remap_active(self) -> None:
        reader = self._reader
        assert reader is not None and self._active is not None
        self._maps[self._active_id] = (self._active.mm, self._offset, reader)
        self._mapped = self._offset

    def _write_hint(self, fid: int) -> None:
        """Build and install the hint of sealed file ``fid`` (background worker)."""
        entry = self._maps.get(fid)
        size = self._sizes.get(fid)
        if entry is None or size is None or entry[0] is None:
            return
        issues = ScanIssues()
        blob = build_hint(fid, size, scan(entry[0], FILE_HEADER_SIZE, size, issues))
        final = os.path.join(self.path, hint_name(fid))
        tmp = write_hint(final, blob, install=False)
        with self._lock:
            if fid in self._sizes:
                os.replace(tmp, final)
            else:
                os.unlink(tmp)

    def _install_merge(
        self,
        inputs: list[int],
        outputs: list[tuple[int, int]],
        moved: list[tuple[bytes, int, int]],
        expired: list[tuple[bytes, int]],
    ) -> None:
        # Caller holds _lock; the files are already swapped on disk.
        kd = self._kd
        kmap = self._kmap
        live = kd.live
        for fid, size in outputs:
            self._maps[fid] = (map_file(os.path.join(self.path, data_name(fid))), size, None)
            self._sizes[fid] = size
            live[fid] = 0
        for key, old, new in moved:
            if kmap.get(key) == old:
                kmap[key] = new
                live[new >> FID_SHIFT] += new & SIZE_MASK
        for key, old in expired:
            if kmap.get(key) == old:
                del kmap[key]
                kd.expiry.pop(key, None)
                kd.note_deleted()
        for fid in inputs:
            self._maps.pop(fid, None)
            self._sizes.pop(fid, None)
            live.pop(fid, None)
        self._merges += 1

    def _maybe_auto_merge(self) -> None:
        opts = self.options
        if not opts.merge_trigger or self._merging:
            return
        disk = sum(self._sizes.values()) + self._offset
        dead = disk - sum(self._kd.live.values())
        if dead >= opts.merge_min_dead_bytes and dead >= opts.merge_trigger * disk:
            self._merging = True  # reset by run_merge; keeps a second trigger out
            self._tasks.put(self._auto_merge)

    def _auto_merge(self) -> None:
        from .errors import MergeInProgressError
        from .merge import run_merge

        try:
            run_merge(self, None)
        except MergeInProgressError:
            pass
        except Exception as exc:  # a background merge must not kill the worker
            self._last_merge_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._merging = self._merge_lock.locked()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
