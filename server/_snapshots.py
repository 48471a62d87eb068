"""snapshot_begin / snapshot_read / snapshot_end: online backup over the binary protocol.

Strategy / invariants:
- The client pulls: every chunk is its own request and its own reply (at most
  SNAPSHOT_MAX_CHUNK bytes), so the one-reply-per-msgid rule holds and back-pressure
  is the client's own pace. Server memory per connection is bounded by the chunks it
  has asked for and not yet received (its pipelining window).
- snapshot_begin runs the engine's three steps off the loop (bitcask/snapshot.py):
  pin the sealed files (waiting for a running merge) in the default executor; the cut
  (seal the active file) on the writer's own thread, so it falls between two group
  commits; then hints and CRCs in the default executor. The cut lies between the
  server reading the request and answering it: every write acknowledged before the
  request was sent is in the snapshot; none acknowledged after the reply is.
- A snapshot belongs to the session (connection) that began it: only that session
  may read or end it, and its pins are released when the connection closes
  (Dispatcher.session_closed) or, for a client that stops asking, after its idle
  timeout (each read pushes it back). Nothing stays pinned forever.
- A connection holds at most --max-snapshots at once (those begun and not ended,
  released or lapsed, and those still beginning): each keeps its files from merges
  and their descriptors open, and its cut seals the active file, so one connection
  calling snapshot_begin in a loop filled the directory with small files and the
  process with descriptors. Past it, BATCH_TOO_LARGE; the connection's own
  snapshot_end makes room.
- Every file read happens in the default executor (no disk I/O on the loop); the
  metrics are updated on the loop, in the completion callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bitcask import snapshot as snapshots
from bitcask.errors import SnapshotNotFoundError
from protocol import ErrorCode, ErrorInfo

from ._metrics import Metrics
from ._outcome import make_error
from ._writer import Writer

__all__ = ["DEFAULT_SNAPSHOT_TIMEOUT", "SnapshotMethods"]

DEFAULT_SNAPSHOT_TIMEOUT = 60.0
"""Idle seconds after which an unread snapshot's pins lapse (snapshot_begin may set it)."""

Settle = Callable[[Any, ErrorInfo | None], None]

log = logging.getLogger("bitcask.server")


class SnapshotMethods:
    """The three snapshot handlers of a Dispatcher.

    Args:
        db: the open store.
        writer: the group-commit writer (the cut runs on its thread).
        metrics: where bytes sent, snapshots taken and the last success are counted.
        error_info: maps an exception to the ErrorInfo sent (the dispatcher's).
        max_snapshots: snapshots one connection may hold at once (--max-snapshots).
    """

    def __init__(
        self,
        db: Any,
        writer: Writer,
        metrics: Metrics,
        error_info: Callable[[BaseException], ErrorInfo],
        max_snapshots: int = 4,
    ) -> None:
        self._db = db
        self._max = max_snapshots
        self._beginning: dict[int, int] = {}  # id(session) -> begins not settled yet
        self._writer = writer
        self._metrics = metrics
        self._error_info = error_info
        self._tasks: set[asyncio.Task[Any]] = set()  # begins in progress (kept referenced)

    # ---- handlers: (session, normalised args) -> start(settle) ----

    def begin(self, session: object, args: tuple[Any, ...]) -> Callable[[Settle], None]:
        timeout = args[0] or DEFAULT_SNAPSHOT_TIMEOUT

        def start(settle: Settle) -> None:
            # Counted when it starts (pipelined begins are called before any runs);
            # the task keeps `session` alive, so its id names no other meanwhile.
            loop = asyncio.get_running_loop()
            key = id(session)
            held = snapshots.held_by(self._db, session) + self._beginning.get(key, 0)
            if held >= self._max:
                message = (
                    f"this connection holds {held} snapshots (max-snapshots {self._max}): "
                    "snapshot_end one before beginning another"
                )
                loop.call_soon(settle, None, make_error(ErrorCode.BATCH_TOO_LARGE, message))
                return
            self._beginning[key] = self._beginning.get(key, 0) + 1

            def begun(_: object) -> None:
                n = self._beginning.pop(key) - 1
                if n:
                    self._beginning[key] = n

            task = loop.create_task(self._begin(session, timeout))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(begun)
            task.add_done_callback(lambda t: self._settle(t, settle, self._began))

        return start

    def read(self, session: object, args: tuple[Any, ...]) -> Callable[[Settle], None]:
        snap_id, name, offset, length = args
        self._owned(session, snap_id)

        def start(settle: Settle) -> None:
            fut = asyncio.get_running_loop().run_in_executor(
                None, snapshots.read_chunk, self._db, snap_id, name, offset, length
            )
            fut.add_done_callback(lambda f: self._settle(f, settle, self._sent))

        return start

    def end(self, session: object, args: tuple[Any, ...]) -> dict[str, Any]:
        snap = self._owned(session, args[0])
        snapshots.release(self._db, snap.id)
        complete = snap.complete
        if complete:
            self._metrics.snapshots_completed += 1
            self._metrics.snapshot_last_success = time.time()
        log.info(
            "snapshot %s ended: %s, %d bytes",
            snap.id,
            "complete" if complete else "incomplete (not every byte was read)",
            snap.total_bytes,
        )
        return {"complete": complete, "bytes": snap.total_bytes}

    def session_closed(self, session: object) -> int:
        """Release every snapshot of a closed connection; returns how many."""
        n = snapshots.release_owner(self._db, session)
        if n:
            log.info("%d snapshot(s) released: their connection closed before snapshot_end", n)
        return n

    # ---- internals ----

    async def _begin(self, session: object, timeout: float) -> snapshots.Snapshot:
        loop = asyncio.get_running_loop()
        snap = await loop.run_in_executor(None, snapshots.pin_sealed, self._db, session, timeout)
        try:
            await self._writer.run_on_writer_thread(lambda: snapshots.seal(self._db, snap))
            await loop.run_in_executor(None, snapshots.prepare, self._db, snap)
        except BaseException:
            snapshots.release(self._db, snap.id)
            raise
        if getattr(session, "closed", False):  # the connection went away meanwhile
            snapshots.release(self._db, snap.id)
        return snap

    def _owned(self, session: object, snap_id: str) -> snapshots.Snapshot:
        snap = snapshots.lookup(self._db, snap_id)
        if snap.owner is not session:
            raise SnapshotNotFoundError(snap_id)  # another connection's: not even named
        return snap

    def _began(self, snap: snapshots.Snapshot) -> dict[str, Any]:
        self._metrics.snapshots_taken += 1
        log.info(
            "snapshot %s begun: %d files, %d bytes, %d keys",
            snap.id,
            len(snap.files),
            snap.total_bytes,
            snap.keys,
        )
        return {
            "id": snap.id,
            "files": [f.to_dict() for f in snap.files],
            "manifest": snap.manifest(),
        }

    def _sent(self, data: bytes) -> bytes:
        self._metrics.snapshot_bytes_sent += len(data)
        return data

    def _settle(
        self, fut: asyncio.Future[Any], settle: Settle, shape: Callable[[Any], Any]
    ) -> None:
        if fut.cancelled():
            settle(None, ErrorInfo.from_code(ErrorCode.SHUTTING_DOWN, "cancelled"))
            return
        exc = fut.exception()
        if exc is None:
            settle(shape(fut.result()), None)
        else:
            settle(None, error_for(exc, self._error_info))


def error_for(exc: BaseException, fallback: Callable[[BaseException], ErrorInfo]) -> ErrorInfo:
    """NO_SUCH_SNAPSHOT for a gone snapshot, else the dispatcher's mapping."""
    if isinstance(exc, SnapshotNotFoundError):
        return ErrorInfo.from_code(ErrorCode.NO_SUCH_SNAPSHOT, str(exc))
    return fallback(exc)
