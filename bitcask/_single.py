"""The one-key writes without the batch: delete and the one-key read-modify-write ops.

Strategy (invariants; the write path's own are in bitcask/_writer.py):
- Each is the one-op case of the batch path and is made of its functions, as put is
  (bitcask/_writer.py): validated by the writer's encoder, admitted (check_writable,
  the max_keys budget), placed (``_make_room``), appended (``_append``, which takes a
  failed append back), published (``_publish`` for a value, ``_publish_removal`` for
  a tombstone, bitcask/_publish.py), then counted by watches; an exception after the
  append goes to ``_escaped``. tests/bitcask/test_fast_paths.py holds them to the
  batch path: the same answers, records, keydir, hints and watch bumps.
- They exist only for speed: the batch's op lists, encoding pass, delete resolution
  and (for an ``Op``) the group planning cost a delete 1,157 bytecodes, a get_delete
  2,006 and an incr 1,732, where a put costs 385 (bench/opcodes.py; the delete and
  incr columns of bench/embedded.py).
- A delete writes a tombstone naming the file of the value it deletes (no merge can
  resurrect the key); a delete of an absent key writes nothing; an expired key is
  absent to the caller and to watches, and its tombstone is still written.
- An ``Op`` (bitcask/_rmw.py) is decided by its own ``apply`` against a ``View``
  under the lock, exactly as in a group; one whose apply raises (not a number, no
  such key, a corrupt record) writes nothing and the error is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._keydir import FID_SHIFT, Keydir
from ._record import encode_tombstone, timestamp_us
from ._rmw import Op, View

if TYPE_CHECKING:
    from ._encode import OpEncoder
    from ._files import FileTable
    from ._group import Watches

__all__ = ["SingleWrites", "release_if_owned"]


class SingleWrites:
    """delete() and apply_one(); mixed into the Writer, whose state (declared below)
    and write steps they use."""

    _lock: threading.RLock
    _kd: Keydir
    _kmap: dict[bytes, int]
    _expiry: dict[bytes, int]
    _files: FileTable
    _encoder: OpEncoder
    _max_keys: int
    _sync_always: bool
    _watches: Watches
    get: Callable[[bytes], bytes | None]
    check_writable: Callable[[], None]
    now_ms: Callable[[], int]
    _check_budget: Callable[[list[bytes], list[int]], None]
    _make_room: Callable[[int], int]
    _append: Callable[[bytes, int, bool, bool], None]
    _publish: Callable[[bytes, int, int, int, int], None]
    _publish_removal: Callable[[bytes, int, int, int, int], None]
    _escaped: Callable[[int, int, BaseException], None]

    def delete(self, key: bytes | str) -> bool:
        """Bitcask.delete (see there): a write_batch of one delete, without the batch."""
        return self._write_one(self._encoder.key(key), None)  # type: ignore[return-value]

    def apply_one(self, op: Op) -> object:
        """commit([op]) for an ``op`` that writes at most one key (incr, get_delete,
        expire, ...), without the group; raises the op's error instead of answering it."""
        return self._write_one(op.key, op)

    def _write_one(self, key: bytes, op: Op | None) -> object:
        # delete(key) when ``op`` is None, else apply_one(op) (``key``: the op's).
        ts = timestamp_us()
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # see release_if_owned
            release_if_owned(lock)
            raise
        try:
            self.check_writable()
            if op is None:
                return self._write_tombstone(key, ts)
            result, writes = op.apply(View(self.get, self._expiry, self._kmap.keys, self.now_ms()))
            if writes:
                ((key, value, exp),) = writes
                if value is None:  # validated as the batch path's encoder does
                    self._write_tombstone(self._encoder.key(key), ts)
                else:
                    key, rec = self._encoder.record(key, value, exp, 0, ts)
                    self._write_value(key, rec, exp, ts)
            return result
        finally:
            lock.release()

    def _write_value(self, key: bytes, rec: bytes, exp: int, ts: int) -> None:
        # Caller holds _lock and found the store writable: ``rec``, the value record of
        # ``key`` (expiry ``exp``), admitted, placed, appended and published
        # (put and apply_one).
        if self._max_keys:
            self._check_budget([key], [exp])
        size = len(rec)
        off = self._make_room(size)
        try:
            self._append(rec, off, self._sync_always, True)
            self._publish(key, off, size, exp, ts)
            if self._watches.counts:  # after the keydir: see _apply
                self._watches.bump((key,))
        except BaseException as exc:
            self._escaped(self._files.active_id, off, exc)
            raise

    def _write_tombstone(self, key: bytes, ts: int) -> bool:
        # Caller holds _lock and found the store writable: delete ``key`` (validated
        # by the encoder); whether it
        # was visible. An absent key writes nothing. No max_keys check: a delete
        # creates no key (KeyBudget admits it always).
        old = self._kmap.get(key)
        if old is None:
            return False
        # An expired key is absent to the caller and to watches (Redis's rule: it is
        # logically gone already; see _apply); its tombstone is written all the same.
        existed = key not in self._expiry or self._kd.visible(key, self.now_ms())
        rec = encode_tombstone(key, old >> FID_SHIFT, ts)
        size = len(rec)
        off = self._make_room(size)
        try:
            self._append(rec, off, self._sync_always, True)
            self._publish_removal(key, old, off, size, ts)
            if existed and self._watches.counts:  # after the keydir: see _apply
                self._watches.bump((key,))
        except BaseException as exc:
            self._escaped(self._files.active_id, off, exc)
            raise
        return existed


def release_if_owned(lock: threading.RLock) -> None:
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
