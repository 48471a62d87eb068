"""The write path: every write of an open store, one way through.

Strategy (invariants):
- One writer at a time: ``lock`` (the store's write lock, shared with the file
  table) serialises every mutation of files and of the keydir (puts, batches,
  rotation, merge swaps, the interval syncer).
- One path for every write. A write is validated and encoded outside the lock
  (``OpEncoder``, bitcask/_encode.py), admitted (``check_writable``, max_keys),
  placed (``_make_room`` rotates when the active file is full), appended with one
  write and fsynced per policy (``_append``, which also handles failure), and only
  then published in the keydir and the hint journal (``_publish`` /
  ``_publish_mixed`` / ``_publish_puts``, bitcask/_publish.py): readers never see a
  write before it is as durable as promised. ``put`` is the one-record case of
  ``write_batch``, made of the same functions; ``write_batch``, ``write_group`` and
  the planned path (bitcask/_planned.py) go through ``_apply`` (bitcask/_publish.py);
  ``delete`` and the one-key read-modify-write ops are one-op writes as ``put`` is
  (bitcask/_single.py).
- Readers see a whole write or none of it: the keydir changes in one C-level call
  per write (bitcask/_publish.py says how).
- A failed write or fsync takes the append back and stops writes until the disk
  heals or a restart; an interrupt after the append, or the store's files gone,
  until a reopen (bitcask/_write_faults.py, with the background worker and syncer).
- Sealed files get their hint in the background worker (``tasks``), built from the
  journal the file table kept while the file was active.
- The Writer is this file's class plus four mixins that share its state
  (``Publication``, ``SingleWrites``, ``WriteFaults``, ``PlannedWrites``): the put path crosses them
  with no call or attribute hop more than one class would take.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from queue import SimpleQueue
from typing import Any

from ._datafile import FILE_HEADER_SIZE, data_name
from ._encode import OpEncoder, expiry_ms
from ._files import FileTable
from ._group import KeyBudget, Watches, batch_effect
from ._health import DiskHealth
from ._keydir import Keydir
from ._planned import Planned, PlannedWrites
from ._publish import Publication
from ._record import IN_BATCH, timestamp_us
from ._single import SingleWrites
from ._single import release_if_owned as _release_if_owned
from ._write_faults import WriteFaults
from .errors import BitcaskError, ReadOnlyError, StoreFullError, StoreIOError
from .options import Options

__all__ = ["Writer"]

log = logging.getLogger("bitcask")


_time_ns = time.time_ns


class Writer(Publication, SingleWrites, WriteFaults, PlannedWrites):
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
        self._encoder = OpEncoder(
            options.max_key_size, options.max_value_size, clock, keydir.map.__contains__
        )
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

    def put(
        self, key: bytes | str, value: bytes | str, ttl: float | timedelta | None = None
    ) -> None:
        """Bitcask.put (see there): a write_batch of one put, without the batch.

        Its own entry point only for speed (bench/embedded.py, the "put" column of the
        100 B workload: the op tuple, the op loop and the batch bookkeeping cost ~25%
        of a put); every step is one of write_batch's own functions. The steps under
        the lock are _single.py's ``_write_value``, which the one-key read-modify-write
        ops share: the call costs a put 9 bytecodes of 394 (bench/opcodes.py), kept so
        that placement, publication and failure handling are written once.
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
        except BaseException:  # see bitcask/_single.py, release_if_owned
            _release_if_owned(lock)
            raise
        try:
            # check_writable() inline: 20,551 -> 20,204 instructions a put (callgrind,
            # 4,000 puts of 100 B, PYTHONHASHSEED=0)
            if self._blocked is not None:
                raise self._refuse()
            self._write_value(key, rec, exp, ts)
        finally:
            lock.release()

    def write_batch(
        self, ops: Sequence[Sequence[Any]], sync: bool | None = None, *, _single: bool = False
    ) -> list[object]:
        """Bitcask.write_batch (see there): ``ops`` as one atomic batch (framed by
        markers), or as plain records with ``_single`` (what put() and delete() write
        on their own paths: tests/bitcask/test_fast_paths.py compares them)."""
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
        except BaseException:  # see bitcask/_single.py, release_if_owned
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
        singles = False  # encoded in the one pass below: one op per batch, none refused
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
                singles = True
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
        except BaseException:  # see bitcask/_single.py, release_if_owned
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
        if singles and len(results) == len(out):
            # Every single op taken (none refused by _admit): one result each, without
            # the slicing loop below. A depth-16 server put 812 -> 781 bytecodes
            # (bench/request_path.py --opcodes).
            return [[r] for r in results]
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
                self.health.throttle.log(  # a client may repeat it (backup, MERGE)
                    "new-file",
                    logging.WARNING,
                    "cannot start a new data file in %s: %s",
                    self.path,
                    reason,
                )
                raise StoreIOError(
                    exc.errno or 0, f"cannot start a new data file, nothing changed: {reason}"
                ) from exc
            raise self._fail(exc, size) from exc
        finally:  # also when an interrupt leaves a finished files.rotate: puts count here
            self._live.setdefault(files.active_id, 0)
        self._dirty = False
        log.debug(
            "rotated in %s: %s sealed at %d bytes, %s started",
            self.path,
            data_name(sealed),
            size,
            data_name(files.active_id),
        )
        if self.options.hint_files:
            self.tasks.put(lambda: files.write_hint(sealed, journal))
        self.after_rotate()
        return sealed
