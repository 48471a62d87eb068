"""Start-up steps of the Server: descriptors, the store's directory, the GC, the ports.

Strategy / invariants:
- The soft descriptor limit is raised to the hard one (as Redis and nginx do) before
  the connection cap is fitted below it (server/_connections.py).
- Any failure to open the store that is not the engine's own error (StoreLockedError,
  ...) is a StoreOpenError, one sentence naming the directory and the cause: the CLI
  exits 3 on it, never "cannot listen". A directory the server creates is 0700.
- A failed bind is a ListenError naming the address and the flag (the CLI exits 4).
- Once the store is open, the objects alive then go to the GC's permanent generation
  and collections become rare (GC_THRESHOLD): nothing on the request path makes cycles.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bitcask

__all__ = ["ListenError", "StoreOpenError", "listen", "open_store", "raise_fd_limit", "tune_gc"]

log = logging.getLogger("bitcask.server")

# The cyclic GC's generation-0 threshold while a server runs. Every request allocates a
# handful of short-lived containers (decoded lists, its Request, its slot, the writer's
# entry) that refcounting frees, but with 800 requests in flight (50 connections x
# depth 16) the live ones kept tripping the default threshold of 700: py-spy put ~16%
# of the server's CPU in gc_collect_main on the depth-16 put row of bench/server.py.
# Nothing on the request path makes reference cycles, so collecting rarely is enough.
GC_THRESHOLD = (50_000, 20, 100)


class StoreOpenError(Exception):
    """The store could not be opened (not a file-system directory, unwritable, ...).

    The CLI exits 3 on it. The engine's own errors (StoreLockedError, ...) pass as they are.
    """


class ListenError(OSError):
    """A port could not be bound; the message names the address, the flag and what to do.

    The CLI exits 4 on it. An OSError, as the bind failure it describes.
    """


# ---- descriptors and the GC ----


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Redis and nginx do).

    Returns:
        The soft limit before and after (equal when it could not be raised).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = _nr_open()
    if soft != resource.RLIM_INFINITY and (soft >= target):
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    return soft, target


def _nr_open() -> int:
    """The kernel's per-process descriptor ceiling (an unlimited hard limit means this)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def tune_gc() -> None:
    """Make the cyclic GC cheap for a long-running server (see GC_THRESHOLD).

    The objects alive once the store is open (modules, the keydir's containers) move
    to the permanent generation (gc.freeze), so full collections stop walking them.
    """
    gc.collect()
    gc.freeze()
    if gc.get_threshold()[0] < GC_THRESHOLD[0]:
        gc.set_threshold(*GC_THRESHOLD)


# ---- the store ----


def open_store(path: Path, options: bitcask.Options) -> Any:
    """Open the store at `path` (in a thread: recovery reads every file).

    A full disk at start opens for reads; the engine heals it (bitcask/_health).

    Raises:
        StoreOpenError: the directory cannot hold a store (a file, unwritable, ...).
        bitcask.BitcaskError: the engine refused the store (e.g. StoreLockedError).
    """
    # The engine creates a missing directory and its missing parents: the last the
    # owner's only, whatever the umask (under umask 000 it was 0777: anyone could
    # read every value, or plant a symlink where the store writes), and each one
    # fsynced into its parent, so a power cut cannot take a new store's directory
    # with the writes acknowledged in it (docs/format.md, "Durability"). An existing
    # one is left as the operator made it. The server only words the errors.
    missing = not path.exists()
    try:
        return bitcask.open(path, options=options)
    except OSError as exc:
        if isinstance(exc, bitcask.BitcaskError):
            raise
        # the engine's sentence for an unwritable store names bitcask.open(readonly=
        # True), no server flag: describe the error it wraps (same errno) instead
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if missing and not path.is_dir() and cause.errno not in (errno.EEXIST, errno.ENOTDIR):
            reason = cause.strerror or str(cause)
            raise StoreOpenError(f"cannot create the store directory {path}: {reason}") from exc
        raise StoreOpenError(_describe(path, cause)) from exc


def _describe(path: object, exc: OSError) -> str:
    """A sentence about why `path` cannot hold a store."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"cannot open the store at {path}: not a directory ({reason})"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot open the store at {path}: the directory is not writable ({reason})"
    if exc.errno == errno.ELOOP and exc.filename:  # O_NOFOLLOW met a planted link
        return (
            f"cannot open the store at {path}: {exc.filename} is a symbolic link, and the "
            "store never writes through one (docs/security.md): replace it with the file"
        )
    return f"cannot open the store at {path}: {reason}"


# ---- the listeners ----


async def listen(
    factory: Callable[[], asyncio.Protocol], host: str, port: int, flag: str
) -> asyncio.Server:
    """A listener on host:port; a bind failure is a ListenError naming `flag`."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
    except OSError as exc:
        raise _listen_error(flag, host, port, exc) from exc


def _listen_error(flag: str, host: str, port: int, exc: OSError) -> ListenError:
    """One sentence for a failed bind: which address, why, and what to do about it."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        hint = (
            f"another program listens there (another bitcask-server? `make run` is one): "
            f"stop it, or pass another {flag}"
        )
        reason = "the address is in use"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"ports below 1024 need privileges: pass {flag} 1024 or above"
        reason = "permission denied"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "no interface of this machine has that address: check --host"
        reason = "the address is not on this machine"
    else:
        hint = f"check --host and {flag}"
        reason = exc.strerror or str(exc)
    return ListenError(exc.errno, f"cannot listen on {where} ({flag}): {reason}; {hint}")
