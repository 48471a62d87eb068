"""Bitcask's life in a process: close, and what a child of fork() inherits.

Strategy / invariants:
- ``LifecycleMethods`` is a mixin of methods only. ``Bitcask``
  (bitcask/db.py) inherits it and supplies the parts declared below; the closed
  flag and the opening process id are set here alone (``_register``, ``close``,
  ``_abandon``); every other method only reads ``_closed``.
- close() is idempotent and may run while other threads are mid-call: it stops the
  writer's threads, waits for a running merge to abandon its copy or finish its
  swap (the merge lock, at most 60 s), flushes and seals the active file under the
  write lock, then releases the directory lock. It is marked done only once it is
  over, so a close() interrupted part way is finished by calling it again.
- fork(): the child of a process with an open store shares its files, its active
  file's mapping and its directory lock, but not its threads. A write there would
  land at the parent's offset, and a close would seal (truncate) the parent's
  active file and unlock the store under it. So in the child (``_inherit``, run by
  an ``os.register_at_fork`` hook over ``_OPEN``) the store reads the state of the
  fork and refuses every write with ReadOnlyError (``_InheritedWriter`` replaces
  the writer: nothing is checked on the put/get path), merge() and backup() are
  refused (``_check_not_inherited``), and close() only lets go of the child's own
  references.
- A store its program never closes is closed anyway, by the same close(): when it
  is collected (``__del__``: CPython frees it as its last reference goes, nothing
  of the store refers back to it; ``gc.collect()`` if the program put it in a
  cycle) and, if still open, at interpreter exit (an ``atexit`` hook over
  ``_OPEN``, run while its daemon threads still answer). Either way with io's
  ``ResourceWarning`` "unclosed store" (silent by default). The background threads
  hold the writer, which reads through a weak reference (``weak_get``), so they
  never keep a dropped store open; a collection that runs in one of them closes in
  a thread of its own (that thread may hold the merge lock and cannot join itself).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._files import FileTable
from ._group import Watches
from ._keydir import Keydir
from ._writer import Writer
from .errors import ReadOnlyError, StoreClosedError
from .merge import Merges

__all__ = ["LifecycleMethods", "weak_get"]


class LifecycleMethods:
    """Close and fork handling of ``Bitcask``; see bitcask/db.py for the class itself."""

    # No ``__slots__ = ()``: these methods set attributes of the instance, which
    # Bitcask holds. Declared here; set here alone: ``_closed`` and ``_opener``, and
    # in a child of fork(), ``_lock`` and ``writer`` replaced (``_inherit``).
    _closed: bool
    _opener: int  # the process that opened the store
    _lock: threading.RLock
    writer: Writer
    files: FileTable
    merges: Merges
    _kd: Keydir
    _readonly: bool
    _release_lock: Callable[[], None]

    if TYPE_CHECKING:

        def get(self, key: bytes | str) -> bytes | None: ...

    def _register(self) -> None:
        # At the end of Bitcask.__init__: open in this process, found by the fork hook.
        self._closed = False
        self._opener = os.getpid()
        _OPEN.add(self)

    def close(self) -> None:
        """Flush, write the active file's hint, release the lock. Idempotent.

        Any thread, even while others are mid-call (they finish or get
        StoreClosedError); a running merge is abandoned (the old files stay
        authoritative) or, if already swapping, finished first. A close()
        interrupted part way (KeyboardInterrupt) is finished by calling it again.

        Example:
            >>> db = bitcask.open("./data"); db.put(b"k", b"v"); db.close()
        """
        writer = self.writer
        if self._closed:
            return
        if os.getpid() != self._opener:
            # A child of fork(): the files, the lock and the threads are the parent's.
            writer.closing = True
            self._closed = True
            self.files.abandon_active()  # closes this process's descriptor, nothing more
            self.files.close()
            self._release_lock()  # DirLock: closes the descriptor, keeps the parent's lock
            _OPEN.discard(self)
            return
        # Done only once it is over: a close() interrupted part way (a second Ctrl-C
        # at its fsync) is finished by the next close(). It used to return at once,
        # leaving the store locked for the rest of the process.
        writer.stop_threads()
        # A merge in another thread notices ``closing`` and abandons its copy, or
        # finishes its swap; either way wait so it never touches a closed store. A
        # snapshot's cut still to come holds the lock for nothing now: let it go (its
        # seal fails as the store is closed); close() used to wait 60 s for it.
        self.merges.pins.let_go_all()
        merge_paused = self.merges.take_lock(60)
        try:
            writer.close_files(StoreClosedError("store is closed"))
            with self._lock:
                self._closed = True
                self.files.close()
                self._release_lock()
        finally:
            if merge_paused:
                self.merges.lock.release()
        _OPEN.discard(self)

    def __del__(self) -> None:
        # Collected without close(): close it (a Bitcask whose __init__ failed has no
        # ``_closed``). Not while the interpreter finalizes: its daemon threads no
        # longer run, so joining them would hang; the atexit hook came first.
        if not getattr(self, "_closed", True) and not sys.is_finalizing():
            self._close_unclosed()

    def _close_unclosed(self) -> None:
        """close() a store its program dropped, or left open at exit, warning as io
        does (a warning made an error, -W error::ResourceWarning, is raised after)."""
        try:
            if os.getpid() == self._opener:  # a child of fork() did not open it
                # stacklevel 1: no caller to name (a collection, or the exit)
                warnings.warn(f"unclosed store {self!r}", ResourceWarning, 1, source=self)
        finally:
            if threading.current_thread() in self.writer.threads:
                # Collected by the store's own thread (a gc pass in the worker, which
                # may hold the merge lock mid-merge): close() would join it, or wait
                # 60 s for the lock. A thread of its own closes once this one lets go.
                threading.Thread(target=self.close, name="bitcask-close").start()
            else:
                self.close()

    def _inherit(self) -> None:
        """In a child of fork() (the ``os.register_at_fork`` hook): serve reads of the
        state at the fork, refuse writes, and drop locks a parent thread may have held."""
        self._kd.after_fork()
        self._lock = threading.RLock()
        if self._readonly or self.writer.closing:
            return
        reason = (
            f"inherited across fork() from process {self._opener}, which owns its files "
            "and writes them; this process reads the state at the fork"
        )
        # cast: the one stand-in for the writer; Bitcask only calls what it defines.
        self.writer = cast(Writer, _InheritedWriter(self.writer, reason))

    def _abandon(self) -> None:
        """Tests: stop as if the process died (no flush, no hint), releasing the lock."""
        self.writer.stop_threads()
        self.writer.abandon_files(StoreClosedError("store is closed"))
        self._closed = True
        self.files.close()
        self._release_lock()

    # Tests reach these parts under their old names.

    def _check_not_inherited(self) -> None:
        # merge() and backup() reach the writer through ``merges``: refuse them here
        # in a child of fork() (see _inherit).
        if isinstance(self.writer, _InheritedWriter):
            raise ReadOnlyError(f"store is read-only: {self.writer.readonly_reason}")


# Every open store of this process, for the fork hook (weak: never keeps one alive).
_OPEN: weakref.WeakSet[LifecycleMethods] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_OPEN):
        db._inherit()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit() -> None:
    # Every store still open at exit, closed cleanly (hint written, lock released)
    # while its daemon threads still run: registered at import, so after the atexit
    # hooks of the program, which may still use its stores. The first exception (a
    # ResourceWarning made an error) is raised once every store is closed.
    first: Exception | None = None
    for db in list(_OPEN):
        if not db._closed:
            try:
                db._close_unclosed()
            except Exception as exc:
                first = first or exc
    if first is not None:
        raise first


atexit.register(_close_at_exit)


def weak_get(db: LifecycleMethods) -> Callable[[bytes], bytes | None]:
    """``db.get`` without a reference to ``db``: the writer's read-modify-write ops
    read through it, and the writer's threads, which hold it, must never keep a
    dropped store open (its lock stayed held for the rest of the process)."""
    ref = weakref.ref(db)

    def read(key: bytes) -> bytes | None:
        store = ref()
        if store is None:
            raise StoreClosedError("store is closed")
        return store.get(key)

    return read


class _InheritedWriter:
    """The writer of a store in a child of fork(): every write is refused (ReadOnlyError);
    sync() does nothing, as in a readonly store. See ``Bitcask._inherit``."""

    readonly = True
    last_task_error: str | None = None
    threads: tuple[threading.Thread, ...] = ()  # the parent's threads are not this process's

    def __init__(self, parent: Writer, reason: str) -> None:
        self.readonly_reason = reason
        self.closing = False
        self.path = parent.path
        self.options = parent.options
        self.health = parent.health
        self.lock = threading.RLock()  # a parent thread may have held the store's
        self.watches = Watches()

    def _refuse(self, *args: object, **kwargs: object) -> Any:
        raise ReadOnlyError(f"store is read-only: {self.readonly_reason}")

    put = delete = apply_one = write_batch = write_group = commit = watch = write_planned = _refuse
    check_writable = rotate = _refuse

    def sync(self) -> None:
        """Nothing to make durable in this process."""
