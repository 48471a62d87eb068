"""The only place where the engine writes, reserves or fsyncs data files, and where
it makes directory entries durable (``fsync_dir``, ``make_dirs``).

This module is part of the test contract: a test monkeypatches ``write``,
``reserve`` or ``fsync`` here to inject ENOSPC/EIO or to count calls. Every
data-file write, space reservation and fsync in the engine calls ``_io.write`` /
``_io.reserve`` / ``_io.fsync`` through the module (never a bound copy), so a patch
takes effect at once. An append to the active file is a ``write`` too: its target is
then the active file (bitcask/_active.py), which copies into its mapping.
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = ["Appendable", "fsync", "fsync_dir", "fsync_parent", "make_dirs", "reserve", "write"]


class Appendable(Protocol):
    """A write target that is not a descriptor: the active file's mapping."""

    def append(self, data: bytes) -> int: ...


_os_write = os.write
_fdatasync = getattr(os, "fdatasync", os.fsync)


def write(fd: int | Appendable, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (one ``os.write`` unless the kernel writes short).

    ``fd`` may be the active file instead: ``data`` is appended to its mapping.

    Raises:
        OSError: as ``os.write`` does (ENOSPC, EIO, ...), or as the active file's
            append does (ENOSPC when it cannot reserve more space).
    """
    if fd.__class__ is not int:
        fd.append(data)  # type: ignore[union-attr]
        return
    n = _os_write(fd, data)
    if n != len(data):
        view = memoryview(data)
        while n < len(view):
            n += _os_write(fd, view[n:])


def reserve(fd: int, offset: int, length: int) -> None:
    """Allocate disk blocks for ``fd``'s bytes ``[offset, offset + length)``.

    Grows the file if needed. Once this returns, writing those bytes (through a
    mapping too) never fails for lack of space.

    Raises:
        OSError: ENOSPC / EDQUOT when the disk cannot hold them, as posix_fallocate.
    """
    os.posix_fallocate(fd, offset, length)


def fsync(fd: int) -> None:
    """Make everything written to ``fd`` durable (``fdatasync`` where available).

    Raises:
        OSError: as ``os.fdatasync`` does.
    """
    _fdatasync(fd)


def replace_file(path: str, blob: bytes, *, mode: int = 0o644, install: bool = True) -> str:
    """Write ``blob`` whole to ``path + ".tmp"``, make it durable, and rename it to
    ``path``: a reader finds the old file or the whole new one, never a part (hints,
    the merge manifest, a repair's quarantine). The caller fsyncs the directory.

    With ``install=False`` the rename is left to the caller; returns the temp path.

    Raises:
        OSError: as the open, write, fsync or rename does (the temp file may be left;
            every reader ignores ``*.tmp`` and the next open removes it).
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        write(fd, blob)
        fsync(fd)
    finally:
        os.close(fd)
    if install:
        os.replace(tmp, path)
    return tmp


def fsync_dir(path: str) -> None:
    """fsync a directory, so the names created or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str, mode: int = 0o777) -> None:
    """``os.makedirs(path, mode, exist_ok=True)``, each directory it creates durable: a
    power cut keeps a new name only once its parent is fsynced, and a store directory
    created by its first open lost every write acknowledged in it with its name."""
    made = []
    p = os.path.abspath(path)
    while not os.path.isdir(p) and os.path.dirname(p) != p:
        made.append(p)
        p = os.path.dirname(p)
    os.makedirs(path, mode, exist_ok=True)
    for p in reversed(made):
        fsync_parent(p)


def fsync_parent(path: str) -> None:
    """fsync the directory holding ``path``'s name. One the process may not open for
    reading is left to the kernel: write and search rights suffice to create in it,
    and a store in such a directory must still open."""
    try:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except PermissionError:
        pass
