"""The only place where the engine writes or fsyncs data files.

This module is part of the test contract: a test monkeypatches ``write`` or
``fsync`` here to inject ENOSPC/EIO or to count calls. Every data-file write and
fsync in the engine calls ``_io.write`` / ``_io.fsync`` through the module (never a
bound copy), so a patch takes effect at once.
"""

from __future__ import annotations

import os

__all__ = ["fsync", "write"]

_os_write = os.write
_fdatasync = getattr(os, "fdatasync", os.fsync)


def write(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (one ``os.write`` unless the kernel writes short).

    Raises:
        OSError: as ``os.write`` does (ENOSPC, EIO, ...).
    """
    n = _os_write(fd, data)
    if n != len(data):
        view = memoryview(data)
        while n < len(view):
            n += _os_write(fd, view[n:])


def fsync(fd: int) -> None:
    """Make everything written to ``fd`` durable (``fdatasync`` where available).

    Raises:
        OSError: as ``os.fdatasync`` does.
    """
    _fdatasync(fd)
