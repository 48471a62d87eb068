"""The only place where the engine writes or fsyncs data files.

This module is part of the test contract: a test monkeypatches ``write`` or
``fsync`` here to inject ENOSPC/EIO or to count calls. Every data-file write and
fsync in the engine calls ``_io.write`` / ``_io.fsync`` through the module (never a
bound copy), so a patch takes effect at once.

Strategy: ``write`` and ``fsync`` are the ``os`` functions themselves, so the hot
paths pay no extra Python frame per put. ``write`` therefore has ``os.write``'s
contract: it returns how many bytes it wrote, which may be fewer than asked (very
large writes, signals). Each caller compares the count with the length and hands a
short write to ``finish``, which completes it through ``write`` again, or calls
``write_all``, which does both. A replacement ``write`` may return None to mean "all
of it" (a test hook that wraps the real one need not pass the count through).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

__all__ = ["finish", "fsync", "write", "write_all"]

# write(fd, data) -> bytes written (may be short; None from a test hook: all of it)
write: Callable[[int, bytes], int | None] = os.write
# fsync(fd): make everything written to fd durable (fdatasync where available)
fsync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def finish(fd: int, data: bytes, done: int | None) -> None:
    """Complete a write of ``data`` to ``fd`` of which ``done`` bytes were written.

    Raises:
        OSError: as ``os.write`` does (ENOSPC, EIO, ...), or EIO if a write makes
            no progress.
    """
    if done is None:
        return
    view = memoryview(data)
    total = len(view)
    while done < total:
        n = write(fd, view[done:])  # type: ignore[arg-type]
        if n is None:
            return
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        done += n


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` through ``write`` (one call unless it is short).

    Raises:
        OSError: as ``os.write`` does (ENOSPC, EIO, ...).
    """
    n = write(fd, data)
    if n != len(data):
        finish(fd, data, n)
