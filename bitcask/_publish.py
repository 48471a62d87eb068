"""A write made visible: a batch laid out in its file, then published in the keydir.

Strategy (invariants; the writer's own are in bitcask/_writer.py):
- ``_apply`` is every write but a plain put (write_batch, write_group, the planned
  path): it resolves deletes against the keydir (a delete of an absent key writes
  nothing), frames the atomic batches with BEGIN/COMMIT markers, places the whole
  write (the writer's ``_make_room``), appends it in one write (``_append``), and only
  then publishes it. ``put`` calls ``_publish`` itself, after the same two steps, and
  ``delete`` ``_publish_removal``.
- Readers take no lock, so the keydir (``map`` and ``expiry``) is changed in ONE
  C-level call per write (``dict.update`` or ``_apply_all``), during which no other
  thread runs under the GIL: the accounting (live bytes, the hint journal, new keys)
  is computed around it in Python, never between the changes.
- Watches count a write only once readers can see it (after the publish).
- ``Publication`` is mixed into the Writer (as ``PlannedWrites`` is) rather than
  being an object of its own: ``self._publish`` is on the put path, where one more
  attribute hop or call is measurable, and the writer's attributes must stay under
  30 (see Writer.__init__). The state it uses is declared below; the writer owns it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import accumulate, repeat
from operator import call as _call
from operator import lshift as _lshift
from operator import or_ as _or
from typing import TYPE_CHECKING

from ._expiry import DUE_LOG_MAX
from ._keydir import FID_SHIFT, SIZE_MASK, Keydir
from ._record import (
    BATCH_BEGIN,
    BATCH_COMMIT,
    HEADER_SIZE,
    IN_BATCH,
    encode_marker,
    encode_tombstone,
)
from .errors import ValueTooLargeError

if TYPE_CHECKING:
    from ._files import FileTable
    from ._group import Watches

__all__ = ["Publication"]

_MAX_BATCH_BYTES = 1 << 32


def _apply_all(
    fns: Sequence[Callable[..., object]], keys: Sequence[bytes], args: Sequence[object]
) -> None:
    """fns[i](keys[i], args[i]) for every i, in one C-level pass: map, operator.call,
    the bound dict methods and the consuming deque are all C, so no bytecode runs and
    no other thread is let in under the GIL before the last change is made."""
    deque(map(_call, fns, keys, args), 0)


class Publication:
    """_apply and the keydir publication (``_publish*``); mixed into the Writer, whose
    state (declared below) they use."""

    _kd: Keydir
    _kmap: dict[bytes, int]
    _expiry: dict[bytes, int]
    _live: dict[int, int]
    _new_keys: list[bytes]
    _files: FileTable
    _clock: Callable[[], float]
    _sync_always: bool
    _watches: Watches
    _make_room: Callable[[int], int]
    _append: Callable[[bytes, int, bool, bool], None]

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

    def _publish_removal(self, key: bytes, old: int, off: int, size: int, ts: int) -> None:
        # Caller holds _lock; the tombstone of ``key`` (``size`` bytes) is written at
        # ``off`` of the active file, deleting the value at keydir location ``old``
        # (delete): _publish_mixed's tombstone step for one record, as _publish is
        # its put step. The location and the expiry go in one step (module header).
        kmap = self._kmap
        expiry = self._expiry
        if expiry and key in expiry:
            _apply_all((kmap.pop, expiry.pop), (key, key), (None, None))
        else:
            del kmap[key]
        self._live[old >> FID_SHIFT] -= old & SIZE_MASK  # a tombstone is dead on arrival
        self._kd.note_deleted()
        files = self._files
        journal = files.journal
        if journal is not None:
            journal.add_tombstone(key, files.base | (off << 32) | size, ts, old >> FID_SHIFT)

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
