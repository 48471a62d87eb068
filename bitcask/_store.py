"""Opening a store: the one linear sequence that builds every part of an open store.

Strategy (rosedb's ``Open()``): options are validated by ``Options`` before this
runs; then, in order: take the directory lock, finish or discard an interrupted
merge, load the files (hints, else a scan) into the keydir, build the file table
and its new active file, compose the ``Bitcask`` (which builds the writer and the
merge coordination), start the background threads, and queue hints for sealed
files that lack one. A writer open always starts a fresh active file (the previous
last file, possibly truncated, becomes sealed and gets its hint in the
background). A readonly open takes no lock, never modifies anything, and retries
the load (a few times) if the writer's merge deletes a file under it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable

from ._files import FileTable
from ._health import is_probe_leftover
from ._io import fsync_parent, make_dirs
from ._lock import DirLock
from ._merge_swap import recover_interrupted
from ._recovery import FileVanished, LoadResult, load
from .db import Bitcask
from .errors import BitcaskError
from .options import Options

__all__ = ["open_store"]

_READONLY_RETRIES = 5


# Errors creating the active file at open that mean "the disk is full": the store
# opens for reads and heals like a failed write (anything else fails the open).
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def open_store(
    path: str, options: Options, readonly: bool, clock: Callable[[], float] | None
) -> Bitcask:
    """Open (creating if needed, unless readonly) the store at ``path``."""
    if readonly:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no store at {path!r}")
        result = _load_readonly(path, options)
        release: Callable[[], None] = lambda: None  # noqa: E731
    else:
        try:
            # the owner's only, whatever the umask (it holds every value), as the
            # server's (server/_startup.py); an existing one is left as it is
            make_dirs(path, mode=0o700)
        except (FileExistsError, NotADirectoryError) as exc:  # a file, or under one
            raise NotADirectoryError(
                errno.ENOTDIR,
                "not a directory: a store is a directory (created if missing); "
                "give the directory's path",
                path,
            ) from exc
        try:
            release = DirLock(path).release
        except OSError as exc:
            _raise_unwritable(path, exc)
            raise
    full: OSError | None = None
    try:
        if not readonly:
            merge_state = recover_interrupted(path)
            for name in os.listdir(path):
                if name.endswith(".hint.tmp") or is_probe_leftover(name):
                    os.unlink(os.path.join(path, name))
            result = load(
                path, readonly=False, use_hints=options.hint_files, merge_state=merge_state
            )
        # An RLock, which knows its owner: a write interrupted right as it took the
        # lock releases it (bitcask/_writer.py, _release_if_owned).
        lock = threading.RLock()
        files = FileTable(
            path,
            result.maps,
            result.sizes,
            max_file=options.max_file_size,
            sync_files=options.sync != "never",
            hints=options.hint_files,
            lock=lock,
        )
        files.unloadable |= result.unloadable
        if not readonly:
            if not result.sizes:
                # A new store: its directory's name is durable before anything is
                # acknowledged in it, whoever made it (the server makes --data itself).
                fsync_parent(path)
            try:
                files.create_active()
                result.keydir.live[files.active_id] = 0
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    raise
                full = exc
    except BaseException as exc:
        release()
        if isinstance(exc, OSError):
            _raise_unwritable(path, exc)
        raise
    db = Bitcask(
        path,
        options,
        keydir=result.keydir,
        files=files,
        lock=lock,
        clock=clock or time.time,
        readonly=readonly,
        recovery=result.report,
        release_lock=release,
    )
    if readonly:
        return db
    writer = db.writer
    try:
        writer.start()
    except BaseException:  # no thread to be had: the lock must not stay taken
        db.close()
        raise
    if full is not None:
        # A full disk at start: serve reads; the probe creates the active file and
        # resumes writes once space returns (no id is taken until then).
        writer.fail_at_start(full)
    if options.hint_files:
        for sealed in result.unhinted:
            writer.tasks.put(lambda sealed=sealed: files.write_hint(sealed))  # type: ignore[misc]
    try:
        db.merges.fold_at_open()  # small files sealed by earlier opens (bitcask/merge.py)
    except BaseException:  # an interrupt (Ctrl-C) in the fold: the lock must not stay taken
        db.close()
        raise
    return db


def _raise_unwritable(path: str, exc: OSError) -> None:
    """A store the user may not write (a directory or file of another user, a
    read-only mount) as one sentence naming the way to read it, with the same errno
    (a PermissionError stays one); any other error is left to the caller to re-raise."""
    if exc.errno not in _NOT_WRITABLE or isinstance(exc, BitcaskError) or exc.filename is None:
        return
    raise OSError(
        exc.errno,
        f"cannot open the store for writing: {exc.strerror} on {exc.filename!r}; "
        "bitcask.open(path, readonly=True) reads it",
        path,
    ) from exc


def _load_readonly(path: str, options: Options) -> LoadResult:
    # A merge of the writer may delete a file between listing and mapping it: retry.
    attempt = 0
    while True:
        try:
            return load(path, readonly=True, use_hints=options.hint_files, merge_state="none")
        except FileVanished:
            attempt += 1
            if attempt == _READONLY_RETRIES:
                raise BitcaskError(f"store {path!r} kept changing while loading") from None
            time.sleep(0.01 * attempt)
