"""``with db.batch() as b``: collect operations, apply them atomically on exit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol

from ._record import as_bytes

__all__ = ["Batch"]


class _Store(Protocol):
    def write_batch(
        self, ops: Sequence[Sequence[Any]], sync: bool | None = None
    ) -> list[object]: ...


class Batch:
    """Operations collected for one atomic ``write_batch``.

    Nothing touches the store until the ``with`` block exits without an exception;
    then every op is written with one write() (and at most one fsync), or none is.
    A Batch is its own thread's (it takes no lock); the write it makes on exit is
    serialized with every other thread's writes, as any write_batch() is.

    Example:
        >>> with db.batch() as b:
        ...     b.put(b"a", b"1", ttl=60)
        ...     b.delete(b"b")
        >>> b.results
        [None, False]
    """

    __slots__ = ("_db", "_done", "ops", "results")

    def __init__(self, db: _Store) -> None:
        self._db = db
        self._done = False
        self.ops: list[tuple[Any, ...]] = []
        self.results: list[object] | None = None

    def put(
        self, key: bytes | str, value: bytes | str, ttl: float | timedelta | None = None
    ) -> None:
        """Queue a put: key and value are taken as bytes now (a bytearray or memoryview
        copied, as plyvel's WriteBatch does), the limits checked when the batch is
        written.

        Raises:
            TypeError / ValueError: a key or value that is not bytes-like or str.

        Example:
            >>> b.put(b"k", b"v", ttl=60)
        """
        self._check()
        # Copied here: queued as given, a buffer reused for each put (buf[:] = key)
        # wrote every op with its last contents, all but one key lost.
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if value.__class__ is not bytes:
            value = as_bytes(value, "value")
        self.ops.append(("put", key, value, ttl))

    def delete(self, key: bytes | str) -> None:
        """Queue a delete; its result (existed) is in ``results`` after the block.

        Example:
            >>> b.delete(b"k")
        """
        self._check()
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        self.ops.append(("delete", key))

    def _check(self) -> None:
        if self._done:
            raise RuntimeError("this batch was already written")

    def __len__(self) -> int:
        return len(self.ops)

    def __enter__(self) -> Batch:
        self._check()  # a second ``with b:`` wrote the same ops again
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done = True
        if exc_type is None:
            self.results = self._db.write_batch(self.ops)
