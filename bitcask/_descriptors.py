"""The descriptor limit of a store that holds one descriptor per data file.

An open store keeps every data file open (its mapping and a reader), so a store of
thousands of files meets the soft RLIMIT_NOFILE (1024 on most systems). Before an
open or a merge adds files, ``ensure_descriptors`` raises the soft limit as far as
the hard one allows; an open that still runs out raises ``out_of_descriptors``'s
error, which says what to change.
"""

from __future__ import annotations

import errno
import logging
import resource

from .errors import StoreIOError

__all__ = ["SPARE_DESCRIPTORS", "ensure_descriptors", "out_of_descriptors"]

log = logging.getLogger("bitcask")

# Descriptors wanted beyond one per data file: the lock, the active file's three, the
# next file of a rotation, a merge's outputs and hints, and the program's own.
SPARE_DESCRIPTORS = 64


def ensure_descriptors(files: int) -> None:
    """Make room for ``files`` descriptors of data files (plus SPARE_DESCRIPTORS).

    When they do not fit under the soft RLIMIT_NOFILE (1024 on most systems), raise
    it to the hard limit, or to twice what is needed when the hard limit is
    unlimited; never lower it. Logged at WARNING. Does nothing when it cannot (an
    open that then runs out fails with ``out_of_descriptors``).
    """
    want = files + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want or (0 <= hard <= soft):
        return
    target = 2 * want if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return
    log.warning(
        "raised the descriptor limit (RLIMIT_NOFILE) from %d to %d: the store holds one "
        "descriptor per data file (%d files)",
        soft,
        target,
        files,
    )


def out_of_descriptors(path: str, files: int, exc: OSError) -> StoreIOError:
    """The error an open that ran out of descriptors (EMFILE) raises, saying why."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return StoreIOError(
        exc.errno or errno.EMFILE,
        f"cannot open the store at {path!r}: it has {files} data files and holds one "
        f"descriptor for each, but the process may open {soft} (RLIMIT_NOFILE); raise the "
        "hard limit (ulimit -Hn, systemd LimitNOFILE=) or merge the store where it allows it",
    )
