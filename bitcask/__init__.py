"""bitcask: a Bitcask-model key/value storage engine in pure Python.

Append-only data files, an in-memory keydir, hint files for fast start-up, and an
online, crash-safe merge. Standard library only.

Example:
    >>> import bitcask, tempfile
    >>> with bitcask.open(tempfile.mkdtemp(), sync="never") as db:
    ...     db.put(b"k", "v")
    ...     db[b"k"]
    b'v'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._group import Watch
from ._recovery import RecoveryReport
from ._rmw import (
    Append,
    Clear,
    CountKeys,
    Expire,
    GetDel,
    GetEx,
    Incr,
    IncrFloat,
    MSetNx,
    Op,
    Peek,
    Persist,
    Rename,
    Set,
)
from .batch import Batch
from .check import CheckReport, Problem, check
from .db import Bitcask
from .errors import (
    BitcaskError,
    CorruptRecordError,
    InvalidOptionsError,
    KeyTooLargeError,
    MergeInProgressError,
    NoSuchKeyError,
    NotANumberError,
    ReadOnlyError,
    StoreClosedError,
    StoreFullError,
    StoreIOError,
    StoreLockedError,
    ValueTooLargeError,
)
from .merge import MergeReport
from .options import Options

if TYPE_CHECKING:
    from ._repair import RepairReport, repair

# repair, imported on first use (PEP 562): a server or an embedding program that never
# repairs a store skips its module (~7M instructions, 1.4% of a bitcask-server start,
# callgrind).
# Not bitcask.check: importing a submodule sets the package's attribute of its name,
# so a lazy `check` would be the module, not the function, once anything imported it.
_LAZY = {"RepairReport": "._repair", "repair": "._repair"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'bitcask' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


# The release, written here only: pyproject.toml reads it (`dynamic`), and the server's
# HELLO, INFO, /metrics and --version print it (bitcask and bitcask-shell through the
# installed metadata, which the build writes from it).
__version__ = "0.1.0"

__all__ = [
    "Append",
    "Batch",
    "Bitcask",
    "BitcaskError",
    "CheckReport",
    "Clear",
    "CorruptRecordError",
    "CountKeys",
    "Expire",
    "GetDel",
    "GetEx",
    "Incr",
    "IncrFloat",
    "InvalidOptionsError",
    "KeyTooLargeError",
    "MSetNx",
    "MergeInProgressError",
    "MergeReport",
    "NoSuchKeyError",
    "NotANumberError",
    "Op",
    "Options",
    "Peek",
    "Persist",
    "Problem",
    "ReadOnlyError",
    "RecoveryReport",
    "Rename",
    "RepairReport",
    "Set",
    "StoreClosedError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockedError",
    "ValueTooLargeError",
    "Watch",
    "check",
    "open",
    "repair",
]


def open(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    options: Options | None = None,
    readonly: bool = False,
    clock: Callable[[], float] | None = None,
    **option_fields: Any,
) -> Bitcask:
    """Open the store at ``path`` (created if missing, unless ``readonly``).

    Args:
        path: the store directory (bytes are decoded as the file system does).
        options: an ``Options``; keyword ``option_fields`` override its fields.
        readonly: take no lock, refuse writes, see the state at open.
        clock: seconds since the epoch as a float, for TTLs (default time.time).

    Returns:
        An open ``Bitcask``; use it as a context manager to close it.

    Raises:
        InvalidOptionsError: a bad or unknown option, ``options`` that is not an
            ``Options``, or a ``clock`` that is not callable.
        StoreLockedError: another process, or an open of this process not closed
            yet, has the store open for writing.
        FileNotFoundError: ``readonly`` and there is no store at ``path``.
        NotADirectoryError: ``path`` is a file (or under one).
        PermissionError / OSError (EROFS): the store cannot be written here (another
            user's, a read-only mount); ``readonly=True`` reads it.

    Example:
        >>> with bitcask.open("./data", sync="always") as db:
        ...     db.put(b"k", b"v")
    """
    from ._store import open_store

    # Checked before anything touches the directory (a dict of options used to fail
    # with AttributeError after the lock was taken; a bad clock only at the first TTL).
    if options is not None and not isinstance(options, Options):
        raise InvalidOptionsError(
            f"options must be a bitcask.Options (or pass keywords), not {type(options).__name__}"
        )
    if clock is not None and not callable(clock):
        raise InvalidOptionsError(f"clock must be callable, not {clock!r}")
    opts = (
        Options.from_kwargs(options, option_fields) if option_fields or options is None else options
    )
    return open_store(os.fsdecode(os.fspath(path)), opts, readonly, clock)
