"""Opening a store: lock, finish an interrupted merge, load, start the threads.

Strategy: ``open_store`` builds a ``Bitcask`` in one place so the class itself only
holds behaviour. A writer open always starts a fresh active file (the previous last
file, possibly truncated, becomes sealed and gets its hint in the background). A
readonly open takes no lock, never modifies anything, and retries the load (a few
times) if the writer's merge deletes a file under it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue

from . import _io
from ._datafile import FILE_HEADER_SIZE
from ._health import DiskHealth
from ._keydir import FID_SHIFT
from ._lock import DirLock
from ._recovery import FileVanished, load
from ._rmw import Watches
from .db import Bitcask
from .errors import BitcaskError, ReadOnlyError
from .merge import recover_interrupted
from .options import Options
from .snapshot import Pins

__all__ = ["open_store"]

_READONLY_RETRIES = 5


# Errors creating the active file at open that mean "the disk is full": the store
# opens for reads and heals like a failed write (anything else fails the open).
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def open_store(
    path: str, options: Options, readonly: bool, clock: Callable[[], float] | None
) -> Bitcask:
    """Open (creating if needed, unless readonly) the store at ``path``."""
    db = Bitcask.__new__(Bitcask)
    db.path = path
    db.options = options
    db.readonly_reason = None
    db._clock = clock or time.time
    db._readonly = readonly
    db._lock = threading.Lock()
    db._merge_lock = threading.Lock()
    db._max_key = options.max_key_size
    db._max_value = options.max_value_size
    db._max_file = options.max_file_size
    db._max_keys = options.max_keys
    db._sync_always = options.sync == "always"
    db._dirty = False
    db._closing = False
    db._merging = False
    db._merges = 0
    db._last_merge_error = None
    db._tasks = SimpleQueue()
    db._threads = []
    db._stop = threading.Event()
    db._health = DiskHealth(path, db._stop)
    db._watches = Watches()
    db._pins = Pins()
    db._wfd = -1
    db._reader = None
    db._offset = 0
    db._mapped = 0
    db._active_id = 0
    db._base = 0
    if readonly:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no store at {path!r}")
        db._release_lock = lambda: None
        db._blocked = ReadOnlyError("store opened readonly")
        db.readonly_reason = "opened readonly"
        for attempt in range(_READONLY_RETRIES):
            try:
                result = load(path, readonly=True, use_hints=options.hint_files, merge_state="none")
                break
            except FileVanished:
                if attempt == _READONLY_RETRIES - 1:
                    raise BitcaskError(f"store {path!r} kept changing while loading") from None
                time.sleep(0.01 * (attempt + 1))
        _install(db, result.keydir, result.sizes, result.maps)
        db._unloadable = result.unloadable
        db.recovery = result.report
        db._next_id = max(result.sizes, default=0) + 1
        return db
    os.makedirs(path, exist_ok=True)
    lock = DirLock(path)
    try:
        merge_state = recover_interrupted(path)
        for name in os.listdir(path):
            if name.endswith(".hint.tmp"):
                os.unlink(os.path.join(path, name))
        result = load(path, readonly=False, use_hints=options.hint_files, merge_state=merge_state)
        _install(db, result.keydir, result.sizes, result.maps)
        db._unloadable = result.unloadable
        db.recovery = result.report
        db._release_lock = lock.release
        db._blocked = None
        fid = max(result.sizes, default=0) + 1
        full: OSError | None = None
        try:
            db._wfd, db._reader = db._create_file(fid)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            full = exc
    except BaseException:
        lock.release()
        raise
    db._next_id = fid + 1
    db._active_id = fid
    db._base = fid << FID_SHIFT
    db._offset = FILE_HEADER_SIZE
    _start_threads(db)
    if db._wfd >= 0:
        db._kd.live[fid] = 0
        db._remap_active()
    else:
        # A full disk at start: serve reads; the probe creates the active file and
        # resumes writes once space returns (no id is taken until then).
        db._next_id = fid
        assert full is not None
        with db._lock:
            db._fail(full, 0)
            db.readonly_reason = f"disk full at start: {db.readonly_reason}"
            db._blocked = ReadOnlyError(f"store is read-only: {db.readonly_reason}")
    if options.hint_files:
        for sealed in result.unhinted:
            db._tasks.put(lambda sealed=sealed: db._write_hint(sealed))  # type: ignore[misc]
    return db


def _install(db: Bitcask, keydir: object, sizes: dict[int, int], maps: dict) -> None:  # type: ignore[type-arg]
    db._kd = keydir  # type: ignore[assignment]
    db._kmap = db._kd.map
    db._live = db._kd.live
    db._expiry = db._kd.expiry
    db._new_keys = db._kd.new_keys
    db._sizes = dict(sizes)
    # _maps is never replaced (only mutated), so the bound get stays valid.
    db._maps = {fid: (mm, sizes[fid] if mm is not None else 0, None) for fid, mm in maps.items()}
    db._kget = db._kmap.get
    db._mget = db._maps.get


def _start_threads(db: Bitcask) -> None:
    worker = threading.Thread(target=_worker, args=(db,), name="bitcask-worker", daemon=True)
    worker.start()
    db._threads.append(worker)
    if db.options.sync == "interval":
        syncer = threading.Thread(target=_syncer, args=(db,), name="bitcask-syncer", daemon=True)
        syncer.start()
        db._threads.append(syncer)


def _worker(db: Bitcask) -> None:
    """Runs background tasks (hint files, auto-merges) one at a time until close."""
    while True:
        task = db._tasks.get()
        if task is None:
            return
        try:
            task()
        except Exception as exc:  # a failed hint is rebuilt at the next open
            db._last_merge_error = f"background task failed: {type(exc).__name__}: {exc}"


def _syncer(db: Bitcask) -> None:
    """sync="interval": fsync the active file every sync_interval_ms when dirty."""
    period = db.options.sync_interval_ms / 1000
    while not db._stop.wait(period):
        if not db._dirty:
            continue
        with db._lock:
            if db._blocked is not None or db._wfd < 0:
                continue
            try:
                _io.fsync(db._wfd)
                db._dirty = False
            except OSError as exc:
                db._fail(exc, db._offset, fsync=True)
