"""`Transaction`: operations collected locally, committed atomically, optionally only
if watched keys are unchanged (optimistic concurrency, as Redis's WATCH/EXEC).

Strategy / invariants:
- A watch lives on one connection of the server (its id means nothing on another).
  The transaction remembers the connection its watch was taken on and sends its
  `commit` on that very connection; if that connection broke meanwhile, the commit
  is not sent at all and the transaction counts as aborted (the server dropped the
  watch with the connection, so "unchanged" can no longer be vouched for). A watch
  id is thus never sent on a connection where it could name someone else's watch.
- Operations are checked locally as they are added (types, sizes, option rules),
  exactly as the single-call methods check them.
- A transaction commits at most once; its watch is consumed by the commit (the
  server releases it), or released by `discard()` / an exception in the block
  (that one without waiting for the reply, so the exception is raised at once).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from client._args import (
    Checks,
    Key,
    Value,
    bad_timeout,
    expire_params,
    float_params,
    incr_params,
    positive,
    rename_params,
    set_params,
)
from client._config import ClientConfig
from client._protocol import ClientProtocol
from client.errors import (
    CallTimeoutError,
    ClientError,
    InterfaceError,
    TransactionAbortedError,
    error_for_code,
)

__all__ = ["Transaction", "TransactionHost", "transact"]


class TransactionHost(Checks, Protocol):
    """What a transaction needs of its client (``Client``, client/_client.py): the
    local checks, plain calls, the default timeout, and the one connection its watch
    and commit share."""

    config: ClientConfig

    def _call(self, method: str, params: list[Any], timeout: float | None) -> Awaitable[Any]: ...

    async def bound_connection(self, timeout: float | None) -> ClientProtocol: ...


T = TypeVar("T")


def _result(kind: str, result: Any) -> Any:
    if type(result) is dict and "error" in result:
        code, name, message = result["error"]
        return error_for_code(code, name, message)
    if kind == "incr_float":
        return float(result)
    return result


class Transaction:
    """Operations applied atomically by one `commit`, each decided by the server at
    apply time; with watched keys, applied only if none of them was written since
    the watch was taken.

    Made by `client.transaction(*keys)`. Inside `async with`, the watch is taken on
    entry; read what you need, add operations; on a clean exit the transaction
    commits, and raises TransactionAbortedError if a watched key changed (nothing
    applied). `await tx.commit()` commits explicitly and returns None instead of
    raising. `client.transact(fn, *keys)` retries for you.

    Attributes:
        results: after a commit that applied, one entry per operation: the result
            the single-call method returns (an incr's new value, a set's bool, ...)
            or, for an operation that failed on its own (NotANumberError,
            NoSuchKeyError), that exception, while the others applied.

    Example:
        >>> async with client.transaction(b"stock") as tx:  # doctest: +SKIP
        ...     left = int(await client.get(b"stock") or 0)
        ...     if left > 0:
        ...         tx.put(b"stock", str(left - 1))
        ...         tx.append(b"orders", b"1,")
    """

    __slots__ = ("_client", "_keys", "_kinds", "_ops", "_proto", "_sent", "_watch", "results")

    def __init__(self, client: TransactionHost, keys: tuple[Key, ...]) -> None:
        self._client = client
        self._keys = [client._key(k) for k in keys]
        if keys:
            client._batch_size(len(self._keys))
        self._ops: list[list[Any]] = []
        self._kinds: list[str] = []
        self._watch: int | None = None
        self._proto: ClientProtocol | None = None
        self._sent = False
        self.results: list[Any] | None = None

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def watched(self) -> bool:
        """True while a watch is held (after `watch()`, before the commit)."""
        return self._watch is not None

    async def watch(self, *, timeout: float | None = None) -> None:
        """Take the watch on this transaction's keys now (`async with` does it)."""
        if self._sent:
            raise InterfaceError("this transaction was already committed; make a new one")
        if not self._keys or self._watch is not None:
            return
        client = self._client
        proto = await client.bound_connection(timeout)
        if timeout is None:
            timeout = client.config.timeout
        # No deadline in the protocol: a timed-out call's reply is dropped there, and
        # this one names a watch the server holds until it is released. So the wait is
        # bounded here, and a watch whose caller gave up is released when it arrives.
        fut = proto.request("watch", [self._keys], math.inf, False)
        try:
            async with asyncio.timeout(timeout):
                wid = await asyncio.shield(fut)
        except BaseException as exc:
            fut.add_done_callback(functools.partial(_release_late, proto))
            if isinstance(exc, TimeoutError) and not isinstance(exc, ClientError):
                raise CallTimeoutError("call timed out") from None
            raise
        self._watch = wid
        self._proto = proto

    # ---- operations (checked now, sent by commit) ----

    def _add(self, kind: str, params: list[Any]) -> Transaction:
        if self._sent:
            raise InterfaceError("this transaction was already committed; make a new one")
        self._ops.append([kind, *params])
        self._kinds.append(kind)
        return self

    def put(self, key: Key, value: Value, ttl: float | None = None) -> Transaction:
        """Add a put (result: True)."""
        params = set_params(self._client, key, value, False, False, False, False, ttl, None)
        return self._add("put", params)

    def delete(self, key: Key) -> Transaction:
        """Add a delete (result: whether the key existed)."""
        return self._add("delete", [self._client._key(key)])

    def set(
        self,
        key: Key,
        value: Value,
        *,
        nx: bool = False,
        xx: bool = False,
        get: bool = False,
        keep_ttl: bool = False,
        ttl: float | None = None,
        at_ms: int | None = None,
    ) -> Transaction:
        """Add a conditional set (result as `client.set`)."""
        params = set_params(self._client, key, value, nx, xx, get, keep_ttl, ttl, at_ms)
        return self._add("set", params)

    def incr(self, key: Key, delta: int = 1) -> Transaction:
        """Add an increment (result: the new value, or NotANumberError)."""
        return self._add("incr", incr_params(self._client, key, delta))

    def incr_float(self, key: Key, delta: float) -> Transaction:
        """Add a float increment (result: the new value as a float)."""
        return self._add("incr_float", float_params(self._client, key, delta))

    def append(self, key: Key, suffix: Value) -> Transaction:
        """Add an append (result: the new length)."""
        return self._add("append", [self._client._key(key), self._client._value(suffix)])

    def get_delete(self, key: Key) -> Transaction:
        """Add a get-and-delete (result: the value it had, or None)."""
        return self._add("get_delete", [self._client._key(key)])

    def expire(
        self, key: Key, ttl: float | None = None, *, at_ms: int | None = None, cond: str = ""
    ) -> Transaction:
        """Add an expiry change (result: whether it applied)."""
        return self._add("expire", expire_params(self._client, key, ttl, at_ms, cond))

    def persist(self, key: Key) -> Transaction:
        """Add removing an expiry (result: whether the key had one)."""
        return self._add("persist", [self._client._key(key)])

    def rename(self, key: Key, new_key: Key, *, nx: bool = False) -> Transaction:
        """Add a rename (result: whether it moved, or NoSuchKeyError)."""
        return self._add("rename", rename_params(self._client, key, new_key, nx))

    # ---- commit ----

    async def commit(self, *, timeout: float | None = None) -> list[Any] | None:
        """Apply the operations atomically; None (nothing applied) if a watched key
        was written since the watch, or the watch's connection was lost.

        Raises:
            InterfaceError: already committed.
            BatchTooLargeError: more operations than the server's max_batch (local).
            ServerError subclasses, CallTimeoutError, ConnectionLostError.
        """
        if self._sent:
            raise InterfaceError("this transaction was already committed; make a new one")
        self._sent = True
        client = self._client
        params: list[Any] = [self._ops]
        if self._watch is None:
            client._batch_size(len(self._ops))
            raw = await client._call("commit", params, timeout)
        else:
            proto, wid = self._proto, self._watch
            self._watch = self._proto = None
            assert proto is not None
            if proto.closed:
                return None  # the server dropped the watch with its connection
            params.append({"watch": wid})
            try:
                client._batch_size(len(self._ops))
                fut = proto.request("commit", params, _deadline(proto, client, timeout), False)
            except BaseException:
                # refused locally (too many ops, frame too large): nothing was sent, so
                # the server still holds the watch; release it (64 leaked watches
                # would refuse every later watch on this connection)
                _unwatch(proto, wid)
                raise
            raw = await fut
        if raw is None:
            return None
        self.results = [_result(k, r) for k, r in zip(self._kinds, raw, strict=True)]
        return self.results

    async def discard(self) -> None:
        """Drop the operations and release the watch (nothing is applied)."""
        self._sent = True
        proto, wid = self._proto, self._watch
        self._watch = self._proto = None
        if proto is not None and wid is not None and not proto.closed:
            fut = proto.request("unwatch", [wid], _deadline(proto, self._client, None), False)
            await asyncio.shield(fut)

    def _abandon(self) -> None:
        """Drop the operations and release the watch without waiting for the reply:
        the exception that abandons the transaction (a cancellation, the block's own
        error) is raised at once, not after a round trip or, with a server that
        stopped answering, a whole timeout ending in a CallTimeoutError that hid it."""
        self._sent = True
        proto, wid = self._proto, self._watch
        self._watch = self._proto = None
        if proto is not None and wid is not None:
            _unwatch(proto, wid, _deadline(proto, self._client, None))

    async def __aenter__(self) -> Transaction:
        await self.watch()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abandon()
            return
        if not self._sent and await self.commit() is None:
            raise TransactionAbortedError("a watched key was written meanwhile; nothing applied")


def _unwatch(proto: ClientProtocol, wid: int, deadline: float = math.inf) -> None:
    """Release watch `wid` on `proto` without waiting for the reply (errors ignored)."""
    if proto.closed:
        return  # the server dropped the watch with the connection
    try:
        fut = proto.request("unwatch", [wid], deadline, False)
    except ClientError:
        return
    fut.add_done_callback(_ignore)


def _release_late(proto: ClientProtocol, fut: asyncio.Future[Any]) -> None:
    """A watch's reply arrived after its caller gave up: release the watch it names."""
    if not fut.cancelled() and fut.exception() is None:
        _unwatch(proto, fut.result())


def _ignore(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so an unawaited failure is not logged


def _deadline(proto: ClientProtocol, client: TransactionHost, timeout: float | None) -> float:
    if timeout is None:
        timeout = client.config.timeout
    elif not positive(timeout):
        raise bad_timeout(timeout)
    return math.inf if timeout is None else proto.time() + timeout


async def transact(
    client: TransactionHost,
    fn: Callable[[Transaction], Awaitable[T]],
    keys: tuple[Key, ...],
    attempts: int,
) -> tuple[T, list[Any]]:
    """Run fn(tx) with a watch on `keys` and commit, retrying while it aborts."""
    if type(attempts) is not int or attempts < 1:
        raise InterfaceError("attempts must be an int >= 1")
    for _ in range(attempts):
        tx = Transaction(client, keys)
        await tx.watch()
        try:
            value = await fn(tx)
        except BaseException:
            tx._abandon()
            raise
        results = await tx.commit()
        if results is not None:
            return value, results
    raise TransactionAbortedError(f"watched keys kept changing: {attempts} attempts aborted")
