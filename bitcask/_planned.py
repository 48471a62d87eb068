"""The writer's planned path: batches with read-modify-write ops or watches.

Strategy / invariants:
- The fast paths (put, write_batch, write_group of plain ops) never come here; they
  raise ``Planned`` on meeting an ``Op`` and the whole group is redone here.
- Under the writer's lock, every batch of the group is decided in order
  (``_group.plan_group``: the view sees the group's earlier writes, a watch that saw a
  write aborts its batch, a batch past max_keys is refused and undone), then all of
  them are encoded and written as one write by the writer's own ``_apply``: the same
  encoding, rotation, failure handling and keydir publication as every write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._group import KeyBudget, Plan, Slot, Watch, Watches, plan_group
from ._record import IN_BATCH, as_bytes
from ._rmw import Op, View
from .errors import BitcaskError, StoreFullError

if TYPE_CHECKING:
    from ._files import FileTable

__all__ = ["Planned", "PlannedWrites"]


class Planned(Exception):
    """Raised by the writer's encoder on meeting an Op: the batch takes this path."""


class PlannedWrites:
    """commit(), watch() and write_planned(); mixed into the Writer, whose state
    (declared below) and encoder/applier they use."""

    _lock: threading.RLock
    _blocked: BitcaskError | None
    _kmap: dict[bytes, int]
    _expiry: dict[bytes, int]
    _max_keys: int
    _max_value: int
    _watches: Watches
    _clock: Callable[[], float]
    _refuse: Callable[[], BitcaskError]
    _full: Callable[[], StoreFullError]
    _encode_ops: Callable[..., tuple[list[bytes], list[bytes], list[int]]]
    _apply: Callable[..., list[object]]
    _escaped: Callable[[int, int, BaseException], None]
    _files: FileTable
    _now_us: Callable[[], int]
    _expiry_of: Callable[[object], int]

    def commit(
        self, ops: Sequence[object], *, watch: Watch | None = None, sync: bool | None = None
    ) -> list[object] | None:
        """Bitcask.commit (bitcask/_db_writes.py) documents this; here it runs in the writer."""
        return self._planned_one(ops, watch, sync)

    def watch(self, *keys: bytes | str) -> Watch:
        """Bitcask.watch (bitcask/_db_writes.py) documents this; here it runs in the writer."""
        return self._watches.watch(
            (as_bytes(k, "key") for k in keys), self._expiry, int(self._clock() * 1000)
        )

    def _planned_one(
        self, ops: Sequence[object], watch: Watch | None, sync: bool | None
    ) -> list[object] | None:
        result = self.write_planned([list(ops)], [watch], sync)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def write_planned(
        self,
        batches: Sequence[Sequence[object]],
        watches: Sequence[Watch | None],
        sync: bool | None = None,
    ) -> list[list[object] | BaseException | None]:
        """Bitcask.write_planned (bitcask/_db_writes.py) documents this; here it runs in the writer."""
        ts = self._now_us()
        out: list[list[object] | BaseException | None] = []
        todo: list[int] = []
        for i, ops in enumerate(batches):
            try:  # validate the plain ops (Ops checked themselves when built)
                self._encode_ops([op for op in ops if not isinstance(op, Op)], 0, ts)
                todo.append(i)
                out.append(None)
            except (ValueError, TypeError) as exc:
                out.append(exc)
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # see _single.release_if_owned
            try:
                lock.release()
            except RuntimeError:
                pass
            raise
        try:
            if self._blocked is not None:
                raise self._refuse()
            kmap = self._kmap
            budget = KeyBudget(kmap, self._max_keys)

            def allowed(present: set[bytes], absent: set[bytes]) -> None:
                if self._max_keys and not budget.fits(present, absent):
                    raise self._full()

            now_ms = int(self._clock() * 1000)
            view = View(self.get, self._expiry, kmap.keys, now_ms)  # type: ignore[attr-defined]
            watches_ = self._watches
            plans = plan_group(
                [list(batches[i]) for i in todo],
                [watches[i] for i in todo],
                view,
                expiry_ms=self._expiry_of,
                changed=lambda w: watches_.changed(w, now_ms),
                new_keys_allowed=allowed,
                max_value=self._max_value,
            )
            keys: list[bytes] = []
            recs: list[bytes] = []
            exps: list[int] = []
            segs: list[tuple[int, bool]] = []
            placed: list[tuple[int, Plan, int]] = []
            for i, plan in zip(todo, plans, strict=True):
                if not isinstance(plan, Plan):
                    out[i] = plan
                    continue
                k, r, e = self._encode_ops(plan.ops, IN_BATCH if plan.atomic else 0, ts)
                placed.append((i, plan, len(keys)))
                if k:
                    keys += k
                    recs += r
                    exps += e
                    segs.append((len(k), plan.atomic))
            at = self._files.active_id, self._files.offset
            try:
                answers = self._apply(keys, recs, exps, sync, segs, ts) if segs else []
            except BaseException as exc:
                self._escaped(*at, exc)
                raise
        finally:
            lock.release()
        for i, plan, first in placed:
            out[i] = [answers[first + r.index] if isinstance(r, Slot) else r for r in plan.results]
        return out
