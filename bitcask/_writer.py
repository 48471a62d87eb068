"""The write path: every write of an open store, one way through.

Strategy (invariants):
- One writer at a time: ``lock`` (the store's write lock, shared with the file
  table) serialises every mutation of files and of the keydir (puts, batches,
  rotation, merge swaps, the interval syncer).
- One path for every write. A write is validated and encoded outside the lock
  (``OpEncoder``, bitcask/_encode.py), placed (``_make_room`` rotates when the
  active file is full), appended with one write and fsynced per policy
  (``_append``, which also handles failure), and only then published in the
  keydir and the hint journal
  (``_publish`` / ``_publish_mixed`` / ``_publish_puts``): readers never see a
  write before it is as durable as promised. ``put`` is the one-record case of
  ``write_batch``, made of the same four functions; ``write_batch``,
  ``write_group`` and the planned path (``_planned``) go through ``_apply``.
- Readers see a whole write or none of it. Readers take no lock, so the keydir
  (``map`` and ``expiry``) is changed in ONE C-level call per write (``dict.update``
  or ``_apply_all``), during which no other thread runs under the GIL: all the
  accounting (live bytes, journal, new keys) is computed around it in Python, never
  between the changes. A Python loop of single dict writes let a reader in another
  thread see half of a batch, or the later of two pipelined writes without the
  earlier one (the GIL switches threads between bytecodes).
- A failed write or fsync takes the append back (``FileTable.cut``) and stops
  writes, as ``_health`` tells the two apart: after a failed write they resume by
  themselves once a probe shows the disk takes writes again; after a failed fsync,
  only after a restart. Out of descriptors is no disk fault: that write fails
  alone. Reads go on throughout.
- Sealed files get their hint in the background worker (``tasks``), built from the
  journal the file table kept while the file was active.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import accumulate, repeat
from operator import call as _call
from operator import lshift as _lshift
from operator import or_ as _or
from queue import Empty, SimpleQueue
from typing import Any

from ._datafile import FILE_HEADER_SIZE
from ._encode import OpEncoder, expiry_ms
from ._expiry import DUE_LOG_MAX
from ._files import FileTable, StoreRemoved
from ._group import KeyBudget, Watches, batch_effect
from ._health import WATCH_PERIOD, DiskHealth, is_transient
from ._keydir import FID_SHIFT, SIZE_MASK, Keydir
from ._planned import Planned, PlannedWrites
from ._record import (
    BATCH_BEGIN,
    BATCH_COMMIT,
    HEADER_SIZE,
    IN_BATCH,
    encode_marker,
    encode_tombstone,
    timestamp_us,
)
from .errors import (
    BitcaskError,
    ReadOnlyError,
    StoreFullError,
    StoreIOError,
    ValueTooLargeError,
)
from .options import Options

__all__ = ["Writer"]

log = logging.getLogger("bitcask")

_MAX_BATCH_BYTES = 1 << 32
_time_ns = time.time_ns


def _apply_all(
    fns: Sequence[Callable[..., object]], keys: Sequence[bytes], args: Sequence[object]
) -> None:
    """fns[i](keys[i], args[i]) for every i, in one C-level pass: map, operator.call,
    the bound dict methods and the consuming deque are all C, so no bytecode runs and
    no other thread is let in under the GIL before the last change is made."""
    deque(map(_call, fns, keys, args), 0)


class Writer(PlannedWrites):
    """The writing half of an open store (``Bitcask`` composes it with the keydir and
    the file table, and forwards its write methods here).

    Args:
        path: the store directory.
        options: the store's options.
        keydir: the keydir (loaded).
        files: the file table (its active file created, unless ``readonly``).
        lock: the store's write lock (the file table's too).
        clock: wall-clock seconds (TTLs).
        read: the store's get() (read-modify-write ops read through it).
        readonly: opened readonly: every write is refused.
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
        read: Callable[[bytes], bytes | None],
        readonly: bool,
    ) -> None:
        self.path = path
        self.options = options
        self.lock = self._lock = lock
        self._clock = clock
        self.get = read
        self._kd = keydir
        self._kmap = keydir.map
        self._expiry = keydir.expiry
        self._live = keydir.live
        self._new_keys = keydir.new_keys
        self._files = files
        self._max_value = options.max_value_size
        # Validation and encoding (bitcask/_encode.py).
        self._encoder = OpEncoder(options.max_key_size, options.max_value_size, clock)
        # Keep the attributes set here under 30: CPython 3.11 stores at most 30 in an
        # instance's shared-key layout, past that every attribute read of the writer
        # is a plain dict lookup. bench/embedded.py put, callgrind: 21,190
        # instructions per put at 29 attributes, 22,877 at 30.
        self._max_file = options.max_file_size
        self._max_keys = options.max_keys  # 0: no limit
        self._sync_always = options.sync == "always"
        self._watches = Watches()
        # Background: the worker runs ``tasks`` (hints, auto-merges) until a None;
        # ``threads`` are joined at close (worker, syncer, disk probe).
        self.tasks: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        self.health = DiskHealth(path, self.stop)
        # Called under the lock after every rotation (the auto-merge trigger).
        self.after_rotate: Callable[[], None] = lambda: None
        self.closing = False
        self.readonly = readonly
        self.readonly_reason: str | None = "opened readonly" if readonly else None
        self._blocked: BitcaskError | None = (
            ReadOnlyError("store opened readonly") if readonly else None
        )
        self._dirty = False
        self.last_task_error: str | None = None

    @property
    def watches(self) -> Watches:
        """The watch counters (``watch()``)."""
        return self._watches

    # ----------------------------------------------------------------- writes

    def put(self, key: bytes | str, value: bytes | str, ttl: float | None = None) -> None:
        """Bitcask.put (see there): a write_batch of one put, without the batch.

        Its own entry point only for speed (bench/embedded.py, the "put" column of the
        100 B workload: the op tuple, the op loop and the batch bookkeeping cost ~25%
        of a put); every step is one of write_batch's own functions.
        """
        ts = _time_ns() // 1000  # timestamp_us() inline: the fast path (see below)
        exp = 0 if ttl is None else expiry_ms(self._clock, ttl)
        try:
            key, rec = self._encoder.record(key, value, exp, 0, ts)
        except struct.error:
            # The clock reads before 1970: the u64 field takes timestamp_us()'s 0. Not
            # timestamp_us() up front: its call cost every put ~2% (callgrind,
            # bench/embedded.py put), the try costs nothing until it raises.
            ts = timestamp_us()
            key, rec = self._encoder.record(key, value, exp, 0, ts)
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # see _release_if_owned
            _release_if_owned(lock)
            raise
        off = -1
        try:
            self.check_writable()
            if self._max_keys:
                self._check_budget([key], [exp])
            size = len(rec)
            off = self._make_room(size)
            self._append(rec, off, self._sync_always, True)
            self._publish(key, off, size, exp, ts)
            if self._watches.counts:  # after the keydir: see _apply
                self._watches.bump((key,))
        except BaseException as exc:
            if off >= 0:
                self._escaped(self._files.active_id, off, exc)
            raise
        finally:
            lock.release()

    def delete(self, key: bytes | str) -> bool:
        """Bitcask.delete (see there): a one-op batch, unframed."""
        return bool(self.write_batch([("delete", key)], _single=True)[0])

    def write_batch(
        self, ops: Sequence[Sequence[Any]], sync: bool | None = None, *, _single: bool = False
    ) -> list[object]:
        """Bitcask.write_batch (see there): ``ops`` as one atomic batch (framed by
        markers), or as one plain record with ``_single`` (delete())."""
        ts = timestamp_us()
        try:
            keys, recs, exps = self._encoder.ops(ops, 0 if _single else IN_BATCH, ts)
        except Planned:
            done = self._planned_one(ops, None, sync)
            assert done is not None  # None only answers a watch
            return done
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # see _release_if_owned
            _release_if_owned(lock)
            raise
        try:
            self.check_writable()
            if self._max_keys:
                self._check_budget(keys, exps)
            at = self._files.active_id, self._files.offset
            try:
                return self._apply(keys, recs, exps, sync, [(len(keys), not _single)], ts)
            except BaseException as exc:
                self._escaped(*at, exc)
                raise
        finally:
            lock.release()

    def write_group(
        self, batches: Sequence[Sequence[Sequence[Any]]], sync: bool | None = None
    ) -> list[list[object] | BaseException]:
        """Bitcask.write_group (see there): independent batches, one write."""
        ts = timestamp_us()
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
                keys, recs, exps = self._encoder.ops([ops[0] for ops in batches], 0, ts)
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
                k, r, e = self._encoder.ops(ops, IN_BATCH if atomic else 0, ts)
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
        try:
            lock.acquire()
        except BaseException:  # see _release_if_owned
            _release_if_owned(lock)
            raise
        try:
            self.check_writable()
            if self._max_keys:
                keys, recs, exps, segs = self._admit(keys, recs, exps, segs, out)
            at = self._files.active_id, self._files.offset
            try:
                results = self._apply(keys, recs, exps, sync, segs, ts) if segs else []
            except BaseException as exc:
                self._escaped(*at, exc)
                raise
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

    def now_ms(self) -> int:
        """The store clock's now, in ms since the epoch (expiries compare to it)."""
        return int(self._clock() * 1000)

    def _now_us(self) -> int:
        return timestamp_us()

    def _expiry_of(self, ttl: object) -> int:
        return expiry_ms(self._clock, ttl)

    def _encode_ops(
        self, ops: Sequence[Sequence[Any]], inner: int, ts: int
    ) -> tuple[list[bytes], list[bytes], list[int]]:
        # The planned path's (bitcask/_planned.py) way to OpEncoder.ops.
        return self._encoder.ops(ops, inner, ts)

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
        written = keys  # the keys a watch sees written
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
            # Deleting a key that has expired is no write for a watch (Redis's rule: an
            # expired key is logically gone already); its tombstone is still written.
            written = [k for k, e, r in zip(keys, exps, results, strict=True) if e >= 0 or r]
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
        off = self._make_room(total)
        if targets:
            aid = self._files.active_id
            atomic_of = [atomic for count, atomic in segs for _ in range(count)]
            for i, target in targets.items():
                if target < 0:  # a value this very write put in the active file
                    targets[i] = target = aid
                inner = IN_BATCH if atomic_of[i] else 0
                recs[i] = encode_tombstone(keys[i], target, ts, inner)
        one = not marked and len(recs) == 1
        starts = [off]  # where each segment's first record lands
        if not marked:
            buf = recs[0] if one else b"".join(recs)
        else:
            # Markers around the atomic segments; record positions are derived from
            # the segment starts only when a per-op publish needs them. The Python
            # loop per record this replaced cost bench/embedded.py's batch column
            # (write_batch of 1,000 x 100 B) 12,191 -> 11,861 instructions per op
            # (callgrind, PYTHONHASHSEED=0).
            parts: list[bytes] = []
            starts = []
            pos = off
            first = 0
            for count, atomic in segs:
                if atomic:
                    begin = encode_marker(BATCH_BEGIN, count, ts)
                    parts.append(begin)
                    pos += len(begin)
                chunk = recs[first : first + count]
                starts.append(pos)
                parts += chunk
                pos += sum(map(len, chunk))
                if atomic:
                    commit = encode_marker(BATCH_COMMIT, count, ts)
                    parts.append(commit)
                    pos += len(commit)
                first += count
            buf = b"".join(parts)
        self._append(buf, off, sync is True or (sync is None and self._sync_always), one)
        # Watches count a write only once readers can see it: a watch taken in
        # between would otherwise pair a counted write with the old value it read.
        if not targets and len(starts) == 1 and not any(exps):
            self._publish_puts(keys, recs, starts[0], ts)
        else:
            positions: list[int] = []
            first = 0
            runs = segs if marked else [(len(recs), False)]  # unmarked: one contiguous run
            for (count, _), start in zip(runs, starts, strict=True):
                if count:
                    chunk = recs[first : first + count - 1]
                    positions += accumulate(map(len, chunk), initial=start)
                    first += count
            self._publish_mixed(keys, recs, exps, positions, targets, ts)
        if self._watches.counts:
            self._watches.bump(written)
        return results

    def _publish(self, key: bytes, off: int, size: int, exp: int, ts: int) -> None:
        # Caller holds _lock; the value record of ``key`` is written at ``off`` (put).
        files = self._files
        loc = files.base | (off << 32) | size
        kmap = self._kmap
        old = kmap.get(key)
        expiry = self._expiry
        if exp:  # the location and the expiry change together (module header)
            _apply_all((kmap.__setitem__, expiry.__setitem__), (key, key), (loc, exp))
            log = self._kd.due_log
            if log is not None:  # for exact counts (bitcask/_expiry.py, count_visible)
                log.append(key)
                if len(log) > DUE_LOG_MAX:
                    self._kd.due_log = None  # no count for long: the next one rebuilds
        elif expiry and key in expiry:
            _apply_all((kmap.__setitem__, expiry.pop), (key, key), (loc, None))
        else:
            kmap[key] = loc
        live = self._live
        live[files.active_id] += size
        if old is None:
            if self._kd.indexed:  # read after the insert: see _keydir
                self._new_keys.append(key)
        else:
            live[old >> FID_SHIFT] -= old & SIZE_MASK
        journal = files.journal
        if journal is not None:
            journal.add(key, loc, ts, exp)

    def _publish_mixed(
        self,
        keys: list[bytes],
        recs: list[bytes],
        exps: list[int],
        positions: list[int],
        targets: dict[int, int],
        ts: int,
    ) -> None:
        # Caller holds _lock; the records are written, record i at positions[i]; an
        # expiry of -1 is a tombstone (deleting the value in file targets[i]). The
        # ops are followed in order in local dicts (the accounting), then the keydir
        # takes their outcome in one step (module header).
        files = self._files
        base, aid, journal = files.base, files.active_id, files.journal
        kmap, live = self._kmap, self._live
        now: dict[bytes, int | None] = {}  # key -> location after the ops so far (None: gone)
        until: dict[bytes, int] = {}  # key -> expiry after the ops so far (0: none)
        fresh: list[bytes] = []
        deleted = 0
        for i, (key, rec, exp, pos) in enumerate(zip(keys, recs, exps, positions, strict=True)):
            size = len(rec)
            loc = base | (pos << 32) | size
            old = now[key] if key in now else kmap.get(key)
            if old is not None:
                live[old >> FID_SHIFT] -= old & SIZE_MASK
            if exp < 0:  # a tombstone is dead on arrival
                now[key] = None
                until[key] = 0
                deleted += old is not None
                if journal is not None:
                    journal.add_tombstone(key, loc, ts, targets[i])
            else:
                now[key] = loc
                until[key] = exp
                live[aid] += size
                if old is None:
                    fresh.append(key)
                if journal is not None:
                    journal.add(key, loc, ts, exp)
        kset, kpop = kmap.__setitem__, kmap.pop
        expiry = self._expiry
        eset, epop = expiry.__setitem__, expiry.pop
        fns: list[Callable[..., object]] = [kpop if loc is None else kset for loc in now.values()]
        fns += [eset if e else epop for e in until.values()]
        args: list[object] = [*now.values(), *[e or None for e in until.values()]]
        _apply_all(fns, [*now, *until], args)
        log = self._kd.due_log
        if log is not None:  # for exact counts (bitcask/_expiry.py, count_visible)
            log.extend([k for k, e in until.items() if e])
            if len(log) > DUE_LOG_MAX:
                self._kd.due_log = None
        for _ in range(deleted):
            self._kd.note_deleted()
        if fresh and self._kd.indexed:  # read after the inserts: see _keydir
            self._new_keys.extend(fresh)

    def _publish_puts(self, keys: list[bytes], recs: list[bytes], pos: int, ts: int) -> None:
        # Caller holds _lock; the records are written. The common batch (puts without
        # a TTL) in C-level passes: locations from running sums of the record sizes,
        # the previous locations in one dict.get pass, then the keydir takes every
        # location in one dict.update (module header). Only a batch that overwrites
        # keys or repeats one takes the slow pass that finds the records that died.
        files = self._files
        kmap = self._kmap
        sizes = list(map(len, recs))
        hi = files.base | (pos << 32)
        locs = list(map(_or, accumulate(map(_lshift, sizes, repeat(32)), initial=hi), sizes))
        olds = list(map(kmap.get, keys))
        held = len(kmap)
        expiry = self._expiry
        if expiry and not expiry.keys().isdisjoint(keys):
            # these puts drop the expiry their keys had: in the same step
            n = len(keys)
            _apply_all([kmap.__setitem__] * n + [expiry.pop] * n, keys + keys, locs + [None] * n)
        else:
            kmap.update(zip(keys, locs, strict=True))
        live = self._live
        live[files.active_id] += sum(sizes)
        new = olds.count(None)
        if new != len(keys) or len(kmap) - held != new:
            # overwrites, or a key repeated: every record of a key but its last is dead
            if len(kmap) - held == new and len(set(keys)) == len(keys):
                for old in olds:  # each key once (the common case): its old record
                    if old is not None:
                        live[old >> FID_SHIFT] -= old & SIZE_MASK
            else:
                last: dict[bytes, int] = {}
                for key, loc, old in zip(keys, locs, olds, strict=True):
                    prev = last.get(key, old)
                    if prev is not None:
                        live[prev >> FID_SHIFT] -= prev & SIZE_MASK
                    last[key] = loc
        if self._kd.indexed:  # read after the inserts: see _keydir
            self._new_keys.extend([k for k, old in zip(keys, olds, strict=True) if old is None])
        journal = files.journal
        if journal is not None:
            journal.extend(keys, locs, ts)

    def sync(self) -> None:
        """Bitcask.sync (see there): every write so far durable now, whatever the policy.

        Under always and interval a rotation fsyncs the file it seals, so the active
        file is all that can be behind. Under never nothing else ever fsyncs: the
        sealed files are fsynced too (clean ones cost a system call each), and the
        directory, whose new names were not."""
        with self._lock:
            if self.readonly or not self._files.has_active:
                return
            try:
                if self.options.sync == "never":
                    self._files.sync_sealed()
                self._files.sync()
            except OSError as exc:
                raise self._fail(exc, self._files.offset, fsync=True) from exc
            self._dirty = False

    def sync_if_dirty(self) -> None:
        """sync="interval": the background syncer's step (a failure stops writes)."""
        if not self._dirty:
            return
        with self._lock:
            if self._blocked is not None or not self._files.has_active:
                return
            try:
                self._files.sync()
                self._dirty = False
            except OSError as exc:
                self._fail(exc, self._files.offset, fsync=True)

    # ------------------------------------------------------ writer internals

    def check_writable(self) -> None:
        """Raise what a write would raise now (caller holds the lock)."""
        if self._blocked is not None:
            raise self._refuse()

    def _refuse(self) -> BitcaskError:
        # Caller holds _lock and found the store blocked: the error to raise.
        blocked = self._blocked
        assert blocked is not None
        if self.health.state != "ok":
            self.health.refused(blocked)
        return blocked

    def _full(self) -> StoreFullError:
        return StoreFullError(
            f"the store holds max_keys={self._max_keys} keys: new keys are refused "
            "(reads, overwrites and deletes go on)"
        )

    def _check_budget(self, keys: list[bytes], exps: list[int]) -> None:
        # Caller holds _lock and max_keys is set: refuse a batch adding keys past it.
        if not KeyBudget(self._kmap, self._max_keys).fits(*batch_effect(keys, exps)):
            raise self._full()

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

    def _make_room(self, total: int) -> int:
        # Caller holds _lock: the offset where ``total`` more bytes will land,
        # rotating first when they would overfill a non-empty active file.
        off = self._files.offset
        if off + total > self._max_file and off > FILE_HEADER_SIZE:
            self.rotate()
            off = self._files.offset
        return off

    def _append(self, buf: bytes, off: int, fsync: bool, one: bool) -> None:
        # Caller holds _lock: one write of ``buf`` at ``off`` (``one``: it is a single
        # record, see FileTable.append), then the fsync asked for.
        # An interrupt (Ctrl-C, a signal handler's exception) in here takes the append
        # back: its caller is told the write did not happen, so neither the keydir nor
        # the hint may get it later. With sync="always" nearly every Ctrl-C of a write
        # loop lands right after the fsync: the record was left on disk, unpublished,
        # missing from the hint, and loaded again only by a scan of its file.
        files = self._files
        try:
            files.append(buf, one)
        except OSError as exc:
            raise self._fail(exc, off) from exc
        except BaseException:
            files.cut(off)
            raise
        if fsync:
            try:
                files.sync()
            except OSError as exc:
                raise self._fail(exc, off, fsync=True) from exc
            except BaseException:
                files.cut(off)
                raise
        self._dirty = True

    def _escaped(self, fid: int, off: int, exc: BaseException) -> None:
        # Caller holds _lock: ``exc`` escaped a write whose bytes were to land at
        # ``off`` of file ``fid`` (or, after a rotation, at the new file's start).
        # If bytes are still there, it came after the append, before or inside the
        # publish (an interrupt: Ctrl-C, a signal handler's exception): the keydir,
        # the hint journal and the file may disagree (a scan of the file then read
        # another store than the hints), so writes stop until a reopen, which reads
        # the file; close() then leaves the active file for that scan, without a hint.
        files = self._files
        if files.offset == (off if files.active_id == fid else FILE_HEADER_SIZE):
            return  # nothing was appended, or _append took it back
        self.readonly_reason = (
            f"a write was interrupted ({type(exc).__name__}) after it reached the file, "
            "before it was published; reopen the store to resume writes"
        )
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        log.warning("write interrupted in %s: %s", self.path, self.readonly_reason)

    def _fail(self, exc: OSError, good_offset: int, *, fsync: bool = False) -> BitcaskError:
        # Caller holds _lock. Cut a partial append, then tell the disk fault apart
        # (see _health): out of descriptors fails this write alone; a failed write
        # refuses writes until a probe succeeds; a failed fsync, until restart; the
        # store's files gone from its directory, until a reopen.
        self._files.cut(good_offset)
        if exc.errno == errno.ENOENT:
            gone = exc.strerror if isinstance(exc, StoreRemoved) else self._files.gone()
            if gone:
                return self._gone(gone)
        reason = f"{type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
        if not fsync and is_transient(exc):
            log.warning("write failed in %s, store stays writable: %s", self.path, reason)
            return StoreIOError(exc.errno or 0, f"write failed, nothing was written: {reason}")
        if fsync:
            self.health.fsync_failed(reason)
            self.readonly_reason = f"fsync failed: {reason}; restart to resume writes"
        else:
            thread = self.health.write_failed(reason, self._resume)
            if thread is not None:
                self.threads.append(thread)
                thread.start()
            self.readonly_reason = f"write failed: {reason}; writes resume once the disk takes them"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        return StoreIOError(exc.errno or 0, f"write failed, store is now read-only: {reason}")

    def _gone(self, why: str) -> ReadOnlyError:
        # Caller holds _lock: the store's files left its directory (_health "removed").
        self.health.removed(why)
        self.readonly_reason = f"{why}; writes would vanish at close: restore it and reopen"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")
        return self._blocked

    def _watch(self) -> None:
        # The worker, idle for WATCH_PERIOD: writes stop once the files are gone.
        with self._lock:
            if self._blocked is None and self._files.has_active:
                why = self._files.gone()
                if why is not None:
                    self._gone(why)

    def fail_until_restart(self, what: str, exc: OSError) -> None:
        """A merge's swap failed after its manifest was written (caller holds the lock):
        the files on disk say "finish the merge", the file table says it never
        happened. Writing on would let a delete's tombstone be merged away while an
        output the table does not know still holds the value, so writes stop until a
        reopen finishes the swap (bitcask/merge.py recover_interrupted)."""
        reason = f"{what}: {type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
        self.health.fsync_failed(reason)
        self.readonly_reason = f"{reason}; restart to resume writes"
        self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    def fail_at_start(self, exc: OSError) -> None:
        """The active file could not be created at open (a full disk): serve reads;
        the probe creates it and resumes writes once space returns."""
        with self._lock:
            self._fail(exc, 0)
            self.readonly_reason = f"disk full at start: {self.readonly_reason}"
            self._blocked = ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    def _resume(self) -> None:
        """The probe thread saw the disk take a write: writable again (OSError if not)."""
        with self._lock:
            if self.closing or self.health.state != "write_failed":
                return
            files = self._files
            if not files.has_active:  # the full disk came at start: no active file yet
                files.create_active()
                self._live[files.active_id] = 0
            self._blocked = None
            self.readonly_reason = None
            self.health.healed()

    def rotate(self, reserve: int = 0, *, requested: bool = False) -> int:
        """Seal the active file and start the next one, ``reserve`` ids later (caller
        holds the lock); returns the sealed file's id. Raises as a failed write does.

        ``requested``: a backup or a merge asked for the cut; no write needs the room.
        If the next file cannot be created (a full disk) nothing has changed and the
        active file still takes writes, so only the caller fails: the store is not
        made read-only by a nightly backup on a disk writes could still use.
        """
        files = self._files
        size = files.offset
        if self.options.sync != "never":
            try:
                files.sync()
            except OSError as exc:
                raise self._fail(exc, size, fsync=True) from exc
        try:
            sealed, journal = files.rotate(reserve)
        except OSError as exc:
            if requested:
                reason = f"{type(exc).__name__}: {exc.strerror or exc} (errno {exc.errno})"
                log.warning("cannot start a new data file in %s: %s", self.path, reason)
                raise StoreIOError(
                    exc.errno or 0, f"cannot start a new data file, nothing changed: {reason}"
                ) from exc
            raise self._fail(exc, size) from exc
        finally:  # also when an interrupt leaves a finished files.rotate: puts count here
            self._live.setdefault(files.active_id, 0)
        self._dirty = False
        if self.options.hint_files:
            self.tasks.put(lambda: files.write_hint(sealed, journal))
        self.after_rotate()
        return sealed

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the background worker (and, for sync="interval", the syncer)."""
        worker = threading.Thread(target=self._work, name="bitcask-worker", daemon=True)
        worker.start()
        self.threads.append(worker)
        if self.options.sync == "interval":
            syncer = threading.Thread(target=self._sync_loop, name="bitcask-syncer", daemon=True)
            syncer.start()
            self.threads.append(syncer)

    def stop_threads(self) -> None:
        """Stop and join every background thread (at close; no write may follow)."""
        self.closing = True
        self.stop.set()
        self.tasks.put(None)
        for t in self.threads:
            t.join()

    def _work(self) -> None:
        # Runs background tasks (hint files, auto-merges) one at a time until close,
        # and checks that the store's files are still there when idle.
        while True:
            try:
                task = self.tasks.get(timeout=WATCH_PERIOD)
            except Empty:
                self._watch()
                continue
            if task is None:
                return
            try:
                task()
            except Exception as exc:  # a failed hint is rebuilt at the next open
                self.last_task_error = f"background task failed: {type(exc).__name__}: {exc}"

    def _sync_loop(self) -> None:
        # sync="interval": fsync the active file every sync_interval_ms when dirty.
        period = self.options.sync_interval_ms / 1000
        while not self.stop.wait(period):
            self.sync_if_dirty()

    def close_files(self, blocked: BitcaskError) -> None:
        """Refuse writes with ``blocked`` from now on; close the active file, sealing it
        and writing its hint (from the journal) when the store is healthy."""
        with self._lock:
            self._blocked = blocked
            if self.readonly:
                return
            healthy = self.readonly_reason is None
            sealed = self._files.close_active(seal=healthy)
            if sealed is None:
                self._live.pop(self._files.active_id, None)
        if sealed is not None and self.options.hint_files:
            try:
                self._files.write_hint(*sealed)
            except OSError:
                pass

    def abandon_files(self, blocked: BitcaskError) -> None:
        """Refuse writes with ``blocked`` and drop the active file as a crash would (tests)."""
        self._blocked = blocked
        self._files.abandon_active()


def _release_if_owned(lock: threading.RLock) -> None:
    """An exception escaped ``lock.acquire()``: release the lock if this thread got it.

    The eval loop runs a signal's Python handler (Ctrl-C's KeyboardInterrupt) as a
    call returns, so an interrupt can be raised after acquire() took the lock and
    before the ``try`` that releases it: about 1 Ctrl-C in 100 of a sync="never"
    put loop left the store's lock held for good (the next write and close() hung).
    An interrupt while waiting raises without the lock. The store's lock is an
    RLock, which knows its owner: release() by another thread is a RuntimeError
    (+39 instructions per acquire and release against a Lock, callgrind; ``with
    lock:`` would cost +1,094). No write takes the lock again while holding it.
    """
    try:
        lock.release()
    except RuntimeError:
        pass  # not this thread's: the interrupt came while it waited
