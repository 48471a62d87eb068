"""The dispatcher's read-modify-write and transaction handlers.

Strategy / invariants:
- ``TransactionHandlers`` is a stateless mixin: methods only, no attributes of its
  own. ``Dispatcher`` (server/_dispatch.py) inherits it and supplies the store and
  the checks declared below (size limits, and ``_write``, the one gate every write
  outcome passes: shutting down, read-only).
- set, incr, incr_float, append, get_delete, expire, persist, rename and clear become
  engine ``Op`` objects (bitcask/_rmw.py) that the writer decides at apply time, so
  each is atomic against every other write without a lock in the server; a commit is
  one batch of them.
- watch/unwatch/commit are Redis's WATCH/EXEC over the binary protocol: a watch id is
  the connection's at once, its engine watch is taken by a Read (after the
  connection's earlier writes applied), and a commit consumes its watch, released
  once the writer decided the commit or when the connection ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import bitcask
from protocol import ErrorCode

from ._outcome import Done, Invalid, Outcome, Read, error_info
from ._session import Session, WatchRef, release_all
from ._writer_thread import WATCH_ABORTED

__all__ = ["MAX_WATCHES", "SINGLE_OPS", "TransactionHandlers"]


class TransactionHandlers:
    """The read-modify-write and transaction handlers of a Dispatcher."""

    __slots__ = ()  # stateless: Dispatcher holds every attribute

    # Supplied by Dispatcher (this mixin declares them, it sets none).
    _db: Any
    _key: Callable[[bytes], bytes]
    _value: Callable[[bytes], bytes]
    _check_batch: Callable[[int], None]
    _check_values: Callable[[list[Any]], None]  # the reply bound, before anything applies
    _write: Callable[..., Outcome]

    def _op(self, kind: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        """The engine Op for one normalised request (or commit op), and its size."""
        key = self._key(args[0])
        if kind == "set":
            _, value, nx, xx, _get, keep, ttl, at_ms = args
            value = self._value(value)
            op: Any = bitcask.Set(key, value, _expiry(ttl, at_ms), nx, xx, keep)
            return op, len(key) + len(value)
        if kind == "incr":
            return bitcask.Incr(key, args[1]), len(key)
        if kind == "incr_float":
            return bitcask.IncrFloat(key, args[1]), len(key)
        if kind == "append":
            suffix = self._value(args[1])
            return bitcask.Append(key, suffix), len(key) + len(suffix)
        if kind == "get_delete":
            return bitcask.GetDel(key), len(key)
        if kind == "expire":
            _, ttl, at_ms, cond = args
            return bitcask.Expire(key, _expiry(ttl, at_ms), cond), len(key)
        if kind == "persist":
            return bitcask.Persist(key), len(key)
        if kind == "rename":
            dst = self._key(args[1])
            return bitcask.Rename(key, dst, args[2]), len(key) + len(dst)
        if kind == "put":
            value = self._value(args[1])
            return ("put", key, value, args[2]), len(key) + len(value)
        if kind == "delete":
            return ("delete", key), len(key)
        raise Invalid(ErrorCode.INVALID_PARAMS, f"{kind!r} is not an operation")

    def _single(self, kind: str, session: Session, args: tuple[Any, ...]) -> Outcome:
        op, nbytes = self._op(kind, args)
        shape = _SHAPES[kind]
        if kind == "set" and args[4]:
            shape = _set_get
        return self._write([op], nbytes, lambda results: _only(results, shape))

    def _clear(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return self._write([bitcask.Clear()], 0, lambda results: _only(results, int))

    def _watch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        keys = [self._key(k) for k in args[0]]
        self._check_batch(len(keys))
        if len(session.watches) >= MAX_WATCHES:
            raise Invalid(
                ErrorCode.BATCH_TOO_LARGE,
                f"this connection holds {MAX_WATCHES} watches; commit or unwatch some",
            )
        # The id is this connection's at once (a pipelined commit may name it); the
        # watch itself is taken by a Read, once this connection's earlier writes
        # applied, so they never count as a change its own commit sees.
        session.last_watch += 1
        ref = WatchRef()
        session.watches[session.last_watch] = ref
        return Read(self._take_watch, (ref, keys, session.last_watch))

    def _take_watch(self, query: tuple[WatchRef, list[bytes], int]) -> int:
        ref, keys, wid = query
        ref.take(self._db.watch(*keys))
        return wid

    def _unwatch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        wid = args[0]
        if wid is None:
            refs, session.watches = list(session.watches.values()), {}
        else:
            ref = session.watches.pop(wid, None)
            refs = [] if ref is None else [ref]
        # Released in order with this connection's reads, so after a pending watch's.
        return Read(release_all, refs)

    def _commit(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        items, wid = args
        self._check_batch(len(items))
        ops: list[Any] = []
        shapes: list[Callable[[Any], Any]] = []
        size = 0
        for item in items:
            op, nbytes = self._op(item[0], item[1:])
            ops.append(op)
            size += nbytes
            shapes.append(_set_get if item[0] == "set" and item[5] else _SHAPES[item[0]])
        self._check_values(ops)
        if wid is None:
            return self._write(ops, size, lambda results: _each(results, shapes))
        # The watch is consumed by its commit (as EXEC ends a Redis WATCH): a second
        # commit with the same id, or an id this connection does not hold (released,
        # or from an earlier connection), aborts.
        watch = session.watches.pop(wid, None)
        if watch is None:
            return Done(None, None)
        session.spent[id(watch)] = watch  # released by the reply or when the connection ends
        try:
            return self._write(
                ops,
                size,
                lambda r: _watched(r, shapes, session, watch),
                watch=watch.get,
                failed=lambda: _release(session, watch),  # IO_ERROR, BUSY: no shape runs
            )
        except BaseException:
            _release(session, watch)
            raise


SINGLE_OPS = (
    "set",
    "incr",
    "incr_float",
    "append",
    "get_delete",
    "expire",
    "persist",
    "rename",
)
"""The requests that are one engine Op each (the reply shaped by _SHAPES)."""


MAX_WATCHES = 64
"""Watches one connection may hold at once (each costs a counter per watched key)."""


def _expiry(ttl: float | None, at_ms: int | None) -> int:
    if at_ms is not None:
        return at_ms
    if ttl is None:
        return 0
    return min(int(time.time() * 1000 + ttl * 1000), 2**63 - 1)


def _applied(result: Any) -> bool:
    return bool(result[0])  # Set: (applied, old value)


def _set_get(result: Any) -> Any:
    return result[1]


def _put_result(result: Any) -> bool:
    return True


_SHAPES: dict[str, Callable[[Any], Any]] = {
    "set": _applied,
    "incr": int,
    "incr_float": bytes,
    "append": int,
    "get_delete": lambda r: r,
    "expire": bool,
    "persist": bool,
    "rename": bool,
    "put": _put_result,
    "delete": bool,
}


def _only(results: list[Any], shape: Callable[[Any], Any]) -> Any:
    result = results[0]
    if isinstance(result, BaseException):
        raise result  # the op's own error (NotANumberError, ...): the request's error
    return shape(result)


def _each(results: list[Any], shapes: list[Callable[[Any], Any]]) -> list[Any]:
    out: list[Any] = []
    for result, shape in zip(results, shapes, strict=True):
        if isinstance(result, BaseException):
            err = error_info(result)
            out.append({"error": [int(err.code), err.name, err.message]})
        else:
            out.append(shape(result))
    return out


def _release(session: Session, watch: WatchRef) -> None:
    session.spent.pop(id(watch), None)
    watch.release()


def _watched(
    results: list[Any], shapes: list[Callable[[Any], Any]], session: Session, watch: WatchRef
) -> list[Any] | None:
    # Runs once the writer decided the commit: its watch has done its work.
    _release(session, watch)
    return None if results is WATCH_ABORTED else _each(results, shapes)
