"""The writer's thread side: the thread itself, and what runs there for one group.

Strategy / invariants (server/_writer.py's Writer is the loop side and inherits
`GroupWrite`):
- `_WriterThread` is the "thread" mode's one thread: it runs the jobs the loop hands
  it, one at a time, and reports each back with one call_soon_threadsafe.
- `GroupWrite` is what runs there (or on the loop in "loop" mode, or in an executor)
  for one group: `_write_group` never raises; it answers one outcome per request.
  A group of plain writes goes to the engine in one call; otherwise `_commit`, the
  writer's only call into the engine, writes every request as its own batch with at
  most one fsync, and checks watches inside the engine's lock.
- A shared failure (`_SHARED`: an I/O error, a read-only or closed store) fails the
  whole group, none of it acknowledged; anything else escaping the engine makes the
  group be retried entry by entry (`_write_alone`), so only the bad request fails.
- WATCH_ABORTED is the results of a request whose watch saw a write.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import bitcask

__all__ = ["WATCH_ABORTED", "Callback", "GroupWrite"]

# callback(results for this entry's ops | None, exception | None)
Callback = Callable[[list[Any] | None, BaseException | None], None]


# One queued request: (ops, callback, nbytes, sync, watch). A tuple, not an object: it
# is built once per write request on the hot path. `watch` is a bitcask.Watch or None.
_Entry = tuple[Sequence[Any], Callback, int, bool, Any]


# Engine failures that concern the whole group (the disk, the store's state), not one op.
_SHARED: tuple[type[BaseException], ...] = (
    bitcask.ReadOnlyError,
    bitcask.StoreClosedError,
    OSError,
)

# Outcome of one entry: its results (a list), or the exception that failed it. Not a
# (results, exc) pair: the engine's own answer per batch already has this shape, so a
# plain group's answer is handed to the loop as the engine returned it (see _write_group).
_Outcome = list[Any] | BaseException


class _WriterThread:
    """The "thread" mode's one thread: runs the jobs the loop hands it, one at a time,
    and reports each back with one call_soon_threadsafe.

    Replaces loop.run_in_executor(ThreadPoolExecutor): per group that cost a
    concurrent Future (its Condition locked and notified), the executor's idle
    semaphore, an asyncio Future chained to it and one more loop turn to run its
    done-callback. Measured on the --sync always put rows of bench/server.py (one
    side-by-side run against the executor, loaded machine): server CPU 38.3 -> 36.3
    us per put at depth 1 and 11.5 -> 10.0 at depth 16; strace -c: 12 -> 10 futex
    calls per group (the rest is the GIL passing between the loop and this thread).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[[Any], Any], Any, Callable[..., None]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="bitcask-writer", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[Any], Any], arg: Any, done: Callable[[Any, Any], None]) -> None:
        """Run fn(arg) in the thread; then done(result, exception) on the loop."""
        self._jobs.put((fn, arg, done))

    def _run(self) -> None:
        get, call_back = self._jobs.get, self._loop.call_soon_threadsafe
        while True:
            job = get()
            if job is None:
                return
            fn, arg, done = job
            try:
                result, exc = fn(arg), None
            except BaseException as err:  # handed to the loop, never lost in the thread
                result, exc = None, err
            try:
                call_back(done, result, exc)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                return

    def stop(self) -> None:
        """Let the thread finish its queued jobs and end; wait for it (blocking)."""
        self._jobs.put(None)
        self._thread.join()


class _Aborted(list[Any]):
    def __bool__(self) -> bool:
        return True


WATCH_ABORTED: list[Any] = _Aborted()
"""The results of a request whose watch saw a write (nothing was applied)."""


class GroupWrite:
    """The group commit's engine side, a mixin of Writer (which holds `_db`)."""

    _db: Any

    def _write_plain(self, group: list[_Entry]) -> list[_Outcome]:
        return self._write_group(group, True)

    def _write_group(self, group: list[_Entry], plain: bool = False) -> list[_Outcome]:
        """Runs in the writer thread (or on the loop in "loop" mode). Never raises.

        `plain`: every entry has ops, no watch and no sync (the common group).
        """
        ops = [entry[0] for entry in group]
        try:
            if plain:
                # The common group in one engine call and one pass: the general path
                # (_commit) walks the group six times (watches, empty batches, copies).
                # Measured in-process, 700 puts of 100 B a group (the depth-16 put
                # row's group size), best of 9: 1.77 us per put through the general
                # path, 1.33 through this one, engine included.
                results = self._db.write_group(ops)
            else:
                force = any(entry[3] for entry in group)
                results = self._commit(ops, force, [entry[4] for entry in group])
        except _SHARED as exc:  # StoreIOError, ReadOnlyError, ...: the whole group fails
            return [exc] * len(group)
        except Exception as exc:  # one op the engine could not take: only its request fails
            if len(group) == 1:
                return [exc]
            return [self._write_alone(entry) for entry in group]
        except BaseException as exc:
            return [exc] * len(group)
        # The engine's answer is already one outcome per request (results or the error
        # that refused it alone): no second list of (results, exc) pairs, Writer._finish
        # tells the two apart. A depth-16 put: 823 -> 812 bytecodes/request
        # (bench/request_path.py --opcodes; the pass cost 13, the check in _finish 2),
        # and one tuple less per put.
        return results  # type: ignore[no-any-return]

    def _write_alone(self, entry: _Entry) -> _Outcome:
        try:
            return self._commit([entry[0]], entry[3], [entry[4]])[0]
        except BaseException as exc:
            return exc

    def _commit(
        self, batches: list[Any], force: bool, watches: list[Any]
    ) -> list[list[Any] | BaseException]:
        """The writer's only call into the engine: one write and at most one fsync for
        the whole group, each request its own batch; per request, its results, the
        error that refused it alone, or WATCH_ABORTED (its watch saw a write)."""
        # A watch may be a callable returning it (taken after the request was queued).
        watches = [w() if callable(w) else w for w in watches]
        todo = [i for i, (ops, w) in enumerate(zip(batches, watches, strict=True)) if ops or w]
        got: Any = iter(())
        if any(w is not None for w in watches):
            # Watches are checked inside the engine's lock, with the group's other batches.
            got = iter(
                self._db.write_planned(
                    [batches[i] for i in todo],
                    [watches[i] for i in todo],
                    sync=True if force else None,
                )
            )
        elif todo:
            got = iter(
                self._db.write_group([batches[i] for i in todo], sync=True if force else None)
            )
        elif force:
            self._db.sync()
        out: list[list[Any] | BaseException] = [[] for _ in batches]
        for i in todo:
            result = next(got)
            if result is None:  # its watch saw a write: nothing applied
                out[i] = WATCH_ABORTED
            else:
                out[i] = result if isinstance(result, BaseException) else list(result)
        return out
