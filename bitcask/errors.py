"""The engine's error hierarchy: one root, a small flat set of subclasses.

Callers match on the class, never on message text. Where an error resembles a
builtin, it also inherits it (``KeyTooLargeError`` is a ``ValueError``,
``StoreIOError`` is an ``OSError``), so generic handlers keep working.
"""

from __future__ import annotations

import os

__all__ = [
    "BitcaskError",
    "CorruptRecordError",
    "InvalidOptionsError",
    "KeyTooLargeError",
    "MergeInProgressError",
    "NoSuchKeyError",
    "NotANumberError",
    "ReadOnlyError",
    "SnapshotNotFoundError",
    "StoreClosedError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockedError",
    "ValueTooLargeError",
]


class BitcaskError(Exception):
    """Root of every error the engine raises on purpose."""


class StoreLockedError(BitcaskError):
    """Another process holds the store's write lock.

    Attributes:
        pid: the holder's process id as written in the LOCK file (None if unreadable).
    """

    def __init__(self, path: str, pid: int | None) -> None:
        if pid is None:
            holder = "another process"
        elif pid == os.getpid():  # an open not closed yet (still referenced)
            holder = f"this process ({pid}): an earlier open of it is not closed"
        else:
            holder = f"process {pid}"
        super().__init__(f"store {path!r} is locked by {holder}")
        self.path = path
        self.pid = pid


class KeyTooLargeError(BitcaskError, ValueError):
    """A key is longer than ``Options.max_key_size``."""


class ValueTooLargeError(BitcaskError, ValueError):
    """A value (or a whole batch) is larger than the store accepts."""


class CorruptRecordError(BitcaskError):
    """A stored record failed its CRC or key check; its value is never returned."""


class ReadOnlyError(BitcaskError):
    """The store refuses writes: opened readonly, turned read-only after a disk error,
    or inherited by a child of fork() (the parent process owns the files).

    ``Bitcask.readonly_reason`` says which.
    """


class StoreIOError(BitcaskError, OSError):
    """A write or fsync of a data file failed; the store has turned read-only."""


class NotANumberError(BitcaskError, ValueError):
    """A read-modify-write found a value it cannot use as a number (not a signed
    64-bit integer, or not a finite float), or the result would overflow."""


class NoSuchKeyError(BitcaskError, KeyError):
    """An operation needs a key that is absent (rename's source)."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "no such key"


class StoreFullError(BitcaskError):
    """The store holds ``Options.max_keys`` keys: a write of a new key is refused.

    Reads, overwrites of existing keys and deletes go on.
    """


class StoreClosedError(BitcaskError):
    """The store was closed."""


class MergeInProgressError(BitcaskError):
    """A merge (or a backup, which pauses merges) is already running."""


class InvalidOptionsError(BitcaskError, ValueError):
    """An ``Options`` field is out of range or of the wrong type."""


class SnapshotNotFoundError(BitcaskError, KeyError):
    """No such snapshot: never taken, released, or expired (its idle timeout passed)."""

    def __str__(self) -> str:
        return f"no snapshot {self.args[0]!r} (released or expired)" if self.args else "no snapshot"
