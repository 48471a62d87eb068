"""The directory lock: one writer process per store.

Strategy: ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<store>/LOCK``. The kernel drops
the lock when the holder dies (even by SIGKILL), so a stale LOCK file never blocks a
restart. The file holds the holder's pid in ASCII, for the error message only; the
file is never deleted (deleting it would let two processes lock two different
inodes). Readonly opens take no lock.

fork(): a flock belongs to the open file description, which a child of fork()
shares with its parent, so ``LOCK_UN`` in the child would take the parent's lock
away (a second writer could then open the store under the parent). ``release``
in any process but the one that took the lock only closes its own descriptor.
"""

from __future__ import annotations

import fcntl
import os

from .errors import StoreLockedError

__all__ = ["LOCK_NAME", "DirLock"]

LOCK_NAME = "LOCK"


class DirLock:
    """An acquired store lock; ``release()`` (or process death) gives it up."""

    __slots__ = ("_fd", "_pid", "path")

    def __init__(self, directory: str) -> None:
        """Take the lock on ``directory``.

        Raises:
            StoreLockedError: another process (or another open in this process)
                holds it; ``.pid`` names the holder when known.
        """
        self.path = os.path.join(directory, LOCK_NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(directory, pid) from None
        except BaseException:
            os.close(fd)
            raise
        self._pid = os.getpid()
        self._fd = fd
        try:  # the pid is for error messages only: a failure (EIO, ENOSPC) is no reason
            os.ftruncate(fd, 0)  # to fail the open, and escaping here it kept the lock
            os.pwrite(fd, f"{self._pid}\n".encode(), 0)  # taken with its descriptor lost
        except OSError:
            pass

    def release(self) -> None:
        """Give the lock up (idempotent); in a child of fork(), only close the
        inherited descriptor: the lock stays the parent's."""
        if self._fd >= 0:
            if os.getpid() == self._pid:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
