"""Bitcask's write methods: put, delete, batches, commit/watch, and the atomic
read-modify-write conveniences (set, incr, append, expire, rename, ...).

Strategy / invariants:
- ``WriteMethods`` is a stateless mixin: methods only, no attributes of its own.
  ``Bitcask`` (bitcask/db.py) inherits it and supplies the one part every method
  here uses, ``writer`` (bitcask/_writer.py), plus the clock for relative TTLs.
- Every method forwards to the writer, which owns all mutation (one writer at a
  time, group commit, durability before visibility); nothing here touches the
  keydir or the files.
- The read-modify-write conveniences build one ``Op`` (bitcask/_rmw.py) and commit
  it alone (a one-key op through the writer's ``apply_one``, the others through
  ``commit``), so each is decided by the writer against the state it lands on:
  atomic against every other write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ._encode import expiry_ms
from ._group import Watch
from ._record import as_bytes
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
from ._writer import Writer
from .batch import Batch
from .errors import StoreClosedError

__all__ = ["WriteMethods"]


class WriteMethods:
    """The write methods of ``Bitcask``; see bitcask/db.py for the class itself."""

    __slots__ = ()  # stateless: Bitcask holds every attribute

    # Supplied by Bitcask (this mixin declares them, it sets none).
    writer: Writer
    _clock: Callable[[], float]
    _closed: bool

    # ------------------------------------------------------------------ writes

    def put(
        self, key: bytes | str, value: bytes | str, ttl: float | timedelta | None = None
    ) -> None:
        """Store ``value`` under ``key``; with ``ttl`` (seconds) it expires after that.

        One write() per call; under sync="always" also one fsync before returning.
        Thread safety: any thread; writes are serialized by the store's write lock.

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
        """``db[key] = value``: put() without a TTL. Any thread.

        Example:
            >>> db[b"user:1"] = b"alice"
        """
        self.writer.put(key, value)

    def __delitem__(self, key: bytes | str) -> None:
        """``del db[key]``: delete(), raising KeyError when absent. Any thread.

        Example:
            >>> del db[b"user:1"]
        """
        if not self.writer.delete(key):
            raise KeyError(key)

    def delete(self, key: bytes | str) -> bool:
        """Delete ``key``; return whether it existed (visible, unexpired).

        Writes a tombstone naming the file of the deleted value, so no merge can
        resurrect the key. Absent keys write nothing. Any thread.

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
        Any thread.

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
        since the watch was taken. Any thread.

        Returns:
            One result per op (an Op's answer, or the NotANumberError /
            NoSuchKeyError / CorruptRecordError it met, or ValueTooLargeError for a
            value it would grow past max_value_size, which writes nothing while the
            other ops apply), or None when the watch saw a write.

        Raises:
            ValueError / TypeError: a malformed op, or a ``watch`` that is not a
                live Watch of this store (nothing written).
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

        Raises:
            StoreClosedError: the store is closed.

        Example:
            >>> with db.watch(b"a") as w: db.commit([("put", b"a", b"2")], watch=w)
            [None]
        """
        if self._closed:
            raise StoreClosedError("store is closed")
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

        Nothing is written if the block raises. Any thread (the Batch is the caller's own).

        Example:
            >>> with db.batch() as b:
            ...     b.put(b"a", b"1"); b.delete(b"b")
        """
        return Batch(self)

    def sync(self) -> None:
        """fsync the active file now, whatever the policy. Any thread (takes the write lock).

        Raises:
            StoreIOError: the fsync failed (the store is now read-only).
            StoreClosedError: the store is closed.

        Example:
            >>> db.put(b"k", b"v"); db.sync()  # durable even under sync="never"
        """
        if self._closed:  # close() synced what there was: a sync now is a mistake
            raise StoreClosedError("store is closed")
        self.writer.sync()

    @property
    def readonly_reason(self) -> str | None:
        """Why writes are refused (readonly open, disk fault), or None."""
        return self.writer.readonly_reason

    # ------------------------------------------------- atomic read-modify-write

    def _one(self, op: Op) -> Any:
        # An op writing at most one key: commit([op]) without the group (the writer's
        # apply_one, bitcask/_single.py; bench/opcodes.py counts what that saves).
        return self.writer.apply_one(op)

    def _planned(self, op: Op) -> Any:
        # An op that may write several keys (rename, clear): commit([op]).
        answers = self.commit([op])
        assert answers is not None  # None only answers a watch
        result = answers[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _at_ms(self, ttl: float | timedelta | None, at_ms: int | None) -> int:
        if ttl is not None and at_ms is not None:
            raise ValueError("give ttl or at_ms, not both")
        return expiry_ms(self._clock, ttl) if ttl is not None else (at_ms or 0)

    def set(
        self,
        key: bytes | str,
        value: bytes | str,
        *,
        ttl: float | timedelta | None = None,
        at_ms: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keep_ttl: bool = False,
    ) -> tuple[bool, bytes | None]:
        """Store ``value`` only if ``key`` is absent (``nx``) or present (``xx``), with
        an expiry (``ttl`` seconds, or ``at_ms`` since the epoch) or the one it has
        (``keep_ttl``); decided atomically by the writer. Any thread.

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
        ttl: float | timedelta | None = None,
        *,
        at_ms: int | None = None,
        cond: str = "",
    ) -> bool:
        """Give an existing key an expiry (``ttl`` seconds or ``at_ms``); ``cond`` as
        Redis's EXPIRE: "nx", "xx", "gt", "lt" or "" (always). An expiry in the past
        deletes the key. Returns whether it was applied (False for an absent key).

        Raises:
            ValueError: neither ``ttl`` nor ``at_ms`` (an expiry of 0, which is none:
                persist() removes one), both, or a ``ttl`` that is not > 0.

        Example:
            >>> db.expire(b"session", 60)
            True
        """
        if not at_ms and ttl is None:  # Expire's own message named the op, not persist()
            raise ValueError(
                "expire() needs a ttl (seconds) or at_ms (ms since the epoch, > 0); "
                "persist() removes an expiry"
            )
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
        return self._planned(Rename(as_bytes(key, "key"), as_bytes(dst, "key"), nx))  # type: ignore[no-any-return]

    def clear(self) -> int:
        """Delete every key in one atomic batch; returns how many there were.

        Example:
            >>> db.clear()
            3
        """
        return self._planned(Clear())  # type: ignore[no-any-return]
