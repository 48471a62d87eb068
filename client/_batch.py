"""`Batch`: puts and deletes collected locally, then applied atomically in one call."""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Protocol

from client._args import Checks, Key, Value, check_ttl
from client.errors import InterfaceError

__all__ = ["Batch", "BatchTarget"]


class BatchTarget(Checks, Protocol):
    """What a batch is sent through: the local checks and one wire call (``Commands``
    in client/_commands.py is one: a Client or a Pool)."""

    def _call(self, method: str, params: list[Any], timeout: float | None) -> Awaitable[Any]: ...


class Batch:
    """An atomic group of puts and deletes (all applied or none, even across a crash).

    Made by `client.batch()`. Operations are checked locally as they are added
    (types and sizes) and sent together, as one `batch` call, when the
    `async with` block exits without an exception or when `execute()` is
    awaited. A batch is sent at most once and never retried automatically.

    Attributes:
        results: after execution, one entry per operation: True for a put, and
            for a delete whether the key existed. None before.

    Example:
        >>> async with client.batch() as b:  # doctest: +SKIP
        ...     b.put(b"user:1", b"ann", ttl=3600)
        ...     b.delete(b"user:0")
        >>> b.results  # doctest: +SKIP
        [True, False]
    """

    __slots__ = ("_ops", "_sent", "_target", "_timeout", "results")

    def __init__(self, target: BatchTarget, timeout: float | None = None) -> None:
        self._target = target
        self._timeout = timeout
        self._ops: list[list[Any]] = []
        self._sent = False
        self.results: list[bool] | None = None

    def __len__(self) -> int:
        return len(self._ops)

    def _check_unsent(self) -> None:
        if self._sent:
            raise InterfaceError("this batch was already sent; make a new one")

    def put(self, key: Key, value: Value, ttl: float | None = None) -> Batch:
        """Add a put; returns the batch so calls can be chained.

        Raises:
            KeyTooLargeError, ValueTooLargeError, InterfaceError: checked now.
        """
        self._check_unsent()
        k = self._target._key(key)
        v = self._target._value(value)
        t = check_ttl(ttl)
        self._ops.append(["put", k, v] if t is None else ["put", k, v, {"ttl": t}])
        return self

    def delete(self, key: Key) -> Batch:
        """Add a delete; returns the batch so calls can be chained."""
        self._check_unsent()
        self._ops.append(["delete", self._target._key(key)])
        return self

    async def execute(self) -> list[bool]:
        """Send the batch now and return its per-operation results.

        Raises:
            InterfaceError: already sent.
            BatchTooLargeError: more operations than the server's max_batch (local).
            ServerError subclasses, CallTimeoutError, ConnectionLostError.
        """
        self._check_unsent()
        self._sent = True
        if not self._ops:
            self.results = []
            return self.results
        self._target._batch_size(len(self._ops))
        results = await self._target._call("batch", [self._ops], self._timeout)
        self.results = [bool(r) for r in results]
        return self.results

    async def __aenter__(self) -> Batch:
        self._check_unsent()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.execute()
