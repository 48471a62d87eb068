"""Deciding a group commit: watches, the max_keys budget, and ``plan_group``.

Strategy / invariants:
- Everything here runs in the one writer, under its lock, so the counters and
  budgets need no locks of their own (``Watches`` takes its own small lock only
  because ``watch()``/``release()`` are called from any thread).
- A ``Watch`` remembers how many writes each watched key has had; the writer counts
  writes only for watched keys (memory grows with watches, not with the keyspace),
  and a batch given a watch applies only if none of its keys was written since,
  even by writes that left the value as it was, and none that was live when
  watched has expired since (Redis 7's rule; active expiry reclaiming a key is
  no write, see bitcask/_expiry.py, and neither is deleting a key that had expired:
  the writer's ``_apply`` leaves such deletes out of what it counts).
- ``plan_group`` decides every batch of a group in order against one ``View``
  (bitcask/_rmw.py), so a later batch sees exactly what the earlier ones left; a
  refused batch's writes are rolled back in the view before the next one runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._record import as_bytes
from ._rmw import Op, View
from .errors import (
    BitcaskError,
    CorruptRecordError,
    NoSuchKeyError,
    NotANumberError,
    ValueTooLargeError,
)

__all__ = [
    "APPLY_ERRORS",
    "KeyBudget",
    "Plan",
    "Slot",
    "Watch",
    "Watches",
    "batch_effect",
    "plan_group",
]


@dataclass
class Watch:
    """Keys and how many writes each had when watched; ``db.watch()`` makes one.

    Pass it to ``commit(ops, watch=w)``: the ops apply only if no watched key was
    written since. Release it (or use ``with``) when done.
    """

    keys: tuple[bytes, ...]
    seen: tuple[int, ...]
    _owner: Watches | None = field(default=None, repr=False)
    # per key, the expiry it had while live when watched (0: none, or already
    # expired): once that passes, the watch counts as changed (Redis 7's rule)
    expires: tuple[int, ...] = ()

    @staticmethod
    def combine(watches: list[Watch]) -> Watch:
        """One watch over the keys of several, each key with the count its part saw
        (a connection that WATCHes several times). Release the parts, not this.

        Example:
            >>> w = bitcask.Watch.combine([db.watch(b"a"), db.watch(b"b")])
        """
        # lists, not tuples grown part by part: that copied every key once per part
        # (quadratic: 100,000 parts of one key took 221 s, on the writer's thread)
        keys: list[bytes] = []
        seen: list[int] = []
        expires: list[int] = []
        for w in watches:
            keys += w.keys
            seen += w.seen
            expires += w.expires or (0,) * len(w.keys)
        owner = watches[0]._owner if watches else None
        return Watch(tuple(keys), tuple(seen), owner, tuple(expires))

    def release(self) -> None:
        """Stop counting writes for these keys (idempotent)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.release(self.keys)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Watches:
    """Write counters of watched keys only (the writer bumps them when it publishes)."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self._refs: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def watch(
        self, keys: Iterable[bytes], expiry: dict[bytes, int] | None = None, now_ms: int = 0
    ) -> Watch:
        """Count writes of ``keys`` from now on; with ``expiry`` (the keydir's) also
        remember when each live key expires."""
        ks = tuple(as_bytes(k, "key") for k in keys)
        with self._lock:
            for k in ks:
                self._refs[k] = self._refs.get(k, 0) + 1
                self.counts.setdefault(k, 0)
            seen = tuple(self.counts[k] for k in ks)
        # Read after the counts: a write in between shows as a count change.
        exps: tuple[int, ...] = ()
        if expiry:
            got = tuple(expiry.get(k, 0) for k in ks)
            if any(got):
                exps = tuple(e if e > now_ms else 0 for e in got)
        return Watch(ks, seen, self, exps)

    def release(self, keys: Iterable[bytes]) -> None:
        with self._lock:
            for k in keys:
                n = self._refs.get(k, 0) - 1
                if n > 0:
                    self._refs[k] = n
                else:
                    self._refs.pop(k, None)
                    self.counts.pop(k, None)

    def changed(self, watch: Watch, now_ms: int | None = None) -> bool:
        """Was any key of ``watch`` written since it was taken, or (given ``now_ms``)
        has one that was live expired since? (caller holds the writer lock, so no
        write runs meanwhile). Reclaiming an expired key is no write."""
        if not isinstance(watch, Watch):  # its missing _owner raised AttributeError
            raise TypeError(f"watch must be a Watch from db.watch(), not {type(watch).__name__}")
        if watch._owner is not self:
            raise ValueError("this watch was released or belongs to another store")
        counts = self.counts
        if any(counts.get(k, -1) != n for k, n in zip(watch.keys, watch.seen, strict=True)):
            return True
        return now_ms is not None and any(0 < e <= now_ms for e in watch.expires)

    def bump(self, keys: Iterable[bytes]) -> None:
        """Count a write of each of ``keys`` that is watched (writer, under its lock)."""
        counts = self.counts
        for k in keys:
            if k in counts:
                counts[k] += 1


# Ops whose failure is the op's own answer, not a refusal of its batch.
APPLY_ERRORS = (NotANumberError, NoSuchKeyError, CorruptRecordError)


class KeyBudget:
    """The max_keys rule, once for every write path (caller holds the writer lock).

    A batch is refused when it creates keys and would leave more than ``limit`` keys;
    what it deletes counts in its favour. Batches admitted earlier in the same group
    count as done.
    """

    def __init__(self, stored: dict[bytes, int], limit: int) -> None:
        self._stored = stored
        self._limit = limit
        self._added: set[bytes] = set()  # keys earlier batches of the group created
        self._removed: set[bytes] = set()  # ... and stored keys they deleted

    def fits(self, present: set[bytes], absent: set[bytes]) -> bool:
        """Admit a batch that leaves ``present`` keys present and ``absent`` absent."""
        stored, added, removed = self._stored, self._added, self._removed
        fresh = {k for k in present if (k not in stored or k in removed) and k not in added}
        freed = {k for k in absent if (k in stored and k not in removed) or k in added}
        count = len(stored) + len(added) - len(removed)
        if fresh and count + len(fresh) - len(freed) > self._limit:
            return False
        for k in fresh:
            if k in removed:
                removed.discard(k)
            else:
                added.add(k)
        for k in freed:
            if k in added:
                added.discard(k)
            else:
                removed.add(k)
        return True


def batch_effect(keys: list[bytes], exps: list[int]) -> tuple[set[bytes], set[bytes]]:
    """(keys left present, keys left absent) by a batch of encoded writes (exp -1: a
    delete), the last write of each key deciding."""
    last: dict[bytes, bool] = {}
    for k, e in zip(keys, exps, strict=True):
        last[k] = e >= 0
    return {k for k, p in last.items() if p}, {k for k, p in last.items() if not p}


# Plan and Slot are plain classes (nothing compares or prints them): as dataclasses
# their generated methods were 9 exec() compilations at import, ~5M instructions of a
# bitcask-server start (callgrind).


class Plan:
    """What one batch of a group commit writes, decided under the writer lock."""

    __slots__ = ("atomic", "ops", "results")

    def __init__(self, ops: list[tuple[object, ...]], results: list[object], atomic: bool) -> None:
        self.ops = ops  # plain ops: ("put_at", key, value, expiry_ms) | ("delete", key)
        self.results = results  # per op of the batch; Slot(i) = the answer of plain op i
        self.atomic = atomic  # framed by BEGIN/COMMIT (several ops, or one op writing several keys)


class Slot:
    """A result the writer fills in: what plain op ``index`` of the plan answered."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def plan_group(
    batches: list[list[object]],
    watches: list[Watch | None],
    view: View,
    *,
    expiry_ms: Callable[[object], int],
    changed: Callable[[Watch], bool],
    new_keys_allowed: Callable[[set[bytes], set[bytes]], None],
    max_value: int = 1 << 62,
) -> list[Plan | BaseException | None]:
    """Decide every batch of a group in order (caller holds the writer lock).

    ``batches`` hold validated plain op tuples and ``Op`` objects. A batch whose watch
    saw a write yields None (not applied); one that would add keys past the store's
    limit yields the refusal ``new_keys_allowed(present, absent)`` raises (the keys the
    batch leaves present and absent), and its writes are undone in the view, so later
    batches never see them. An op whose result would be larger than ``max_value``
    (an append) fails alone with ValueTooLargeError and writes nothing.
    """
    out: list[Plan | BaseException | None] = []
    written: set[bytes] = set()  # keys earlier batches of this group write (not yet counted)
    for ops, watch in zip(batches, watches, strict=True):
        if watch is not None and (changed(watch) or not written.isdisjoint(watch.keys)):
            out.append(None)
            continue
        mark = view.mark()
        plain: list[tuple[object, ...]] = []
        results: list[object] = []
        last: dict[bytes, bool] = {}  # key -> present after this batch's last write
        for op in ops:
            if isinstance(op, Op):
                try:
                    result, writes = op.apply(view)
                    for _, value, _ in writes:
                        if value is not None and len(value) > max_value:
                            raise ValueTooLargeError(
                                f"value of {len(value)} bytes exceeds max_value_size {max_value}"
                            )
                except (*APPLY_ERRORS, ValueTooLargeError) as exc:
                    result, writes = exc, []
                results.append(result)
            else:
                assert isinstance(op, tuple | list)
                if op[0] == "delete":
                    writes = [(op[1], None, 0)]
                else:
                    ttl = op[3] if len(op) == 4 else None
                    writes = [(op[1], op[2], 0 if ttl is None else expiry_ms(ttl))]
                results.append(Slot(len(plain)))
            view.record(writes)
            for key, value, exp in writes:
                if value is None:
                    plain.append(("delete", key))
                else:
                    plain.append(("put_at", key, value, exp))
                last[key] = value is not None
        try:
            new_keys_allowed(
                {k for k, p in last.items() if p}, {k for k, p in last.items() if not p}
            )
        except BitcaskError as exc:
            view.rollback(mark)
            out.append(exc)
            continue
        out.append(Plan(plain, results, atomic=len(ops) > 1 or len(plain) > 1))
        written.update(last)
    return out
