"""The one writer: every mutation of the store passes through this queue (group commit).

Strategy / invariants:
- Connections validate a request, then `submit()` its ops with a callback. Submission
  never runs the write; it appends to `_queue` and, if the writer is idle, schedules
  `_kick` with call_soon, so every request decoded in the same event-loop turn lands
  in the same group.
- `_kick` takes everything queued (bounded by bytes) and calls `db.write_group(...)`
  exactly once, one batch per request: one os.write and at most one fsync for the whole
  group. While that call runs (off the loop unless mode == "loop"), new requests queue
  up; when it returns the next group starts (below: at once, or after the linger). At
  most one write_group is ever running, so the engine sees one writer thread at a time.
- Group commit shares the write and the fsync, never the fate: each request is its own
  engine batch (a client's batch/mput stays atomic; single writes are plain records),
  so a damaged record on disk costs that record, never the other requests written
  with it. Requests are validated completely before they are submitted
  (protocol.validate_params and the dispatcher's limits); a request the engine still
  refuses fails alone (write_group answers per batch). A group fails as a whole only
  for a shared reason: an I/O error (StoreIOError, any OSError), a read-only or closed
  store (`_SHARED`); none of it was acknowledged. Anything else escaping the engine
  makes the group be retried entry by entry, so only the bad request fails.
- The engine is called in one place, `_commit` (server/_writer_thread.py: what runs
  in the writer thread for one group; Writer inherits it as `GroupWrite`).
- Callbacks run on the loop, in submission order, after the engine updated its keydir,
  so a reply is only sent for a write a reader can already see, and (under sync
  "always") only after the fsync that covers it returned: nothing is acknowledged
  earlier, whatever the policy below decides.
- When a group ends, the next one starts at once without the linger, or with it when
  it already holds LINGER_FILL of what is in flight; its write then starts first (in
  the writer thread) and the finished group's replies are built meanwhile (still one
  write_group at a time). What overlaps the loop's work is the os.write and the fsync
  (both release the GIL); the engine's Python part of group N+1 waits for the GIL
  until the loop blocks or the switch interval (5 ms) passes: on the depth-16 put row
  under --sync always (loaded machine) the thread began 3-5 ms (median) after the
  hand-off, with the loop busy on replies and new requests all along.
- The linger (linger=True, i.e. --sync always; `_next`): else the next group waits
  until it holds LINGER_FILL (90%) of the requests in flight, counted as the ones
  queued plus the ones the finished group just acknowledged (their clients are about
  to send their next). Redis does one write+fsync per event-loop turn for all that
  arrived in it; starting the next group with whatever came during the fsync instead
  made groups alternate 49/1 or 25/25 at depth 1. The wait is bounded: it ends at the
  first arrival past its bound (the last commit's duration, at most LINGER_MAX), or
  by a timer when nothing arrives. With one request in flight (a lone client) nothing
  is awaited: its next request is written at once, in a group of one; with
  LINGER_ENOUGH or more in flight neither (the groups are large anyway). After a crowd
  leaves, the first lone request may wait once for the bound. Under never/interval
  there is no per-group fsync to share, and no linger.
- Back-pressure: above `max_depth` queued entries `on_pressure(True)` pauses readers; it
  is called with False once the queue has been taken below half of that. Above
  `4 * max_depth` (possible only from data already buffered) `submit` returns False
  and the caller answers BUSY.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from bitcask.logthrottle import LogThrottle

from ._metrics import Metrics
from ._writer_thread import Callback, GroupWrite, _Entry, _Outcome, _WriterThread

__all__ = ["MODES", "Writer"]

log = logging.getLogger("bitcask.server.writer")
# a failing callback fails once per write: one line per kind every 10 s, the rest counted
_throttle = LogThrottle(log)

MODES = ("thread", "executor", "aiofiles", "loop")
# A group is cut after this many payload bytes, so one huge burst cannot make one
# giant write (memory) or delay the first requests of the burst for too long.
MAX_GROUP_BYTES = 32 * 1024 * 1024

# The linger (Writer(linger=True), i.e. --sync always; see _next): after a group, the
# next one starts once it holds LINGER_FILL of the requests in flight, i.e. the ones
# queued plus the ones just acknowledged (their clients are about to send the next).
# Without it, on bench/server.py's depth-1 put row (50 connections), the next group
# started with whatever had queued during the fsync: the one or two clients that answered
# first. Groups alternated 49/1 or 25/25 (1,205 fsyncs for 30,000 puts, 25 a group:
# every other fsync covered almost nothing). With it: 43-50 a group, and server CPU per
# put fell 29.2 -> 24.4, 32.8 -> 26.8 and 23.7 -> 21.4 us (medians of three sets of
# 4-5 alternating bench runs), as each group costs ~200 us of writer-thread CPU besides
# its records (fdatasync on this virtual disk alone is 50-120 us of kernel CPU) and two
# thread hand-offs. Throughput: +30% on the loaded machine, equal in the quietest set.
LINGER_FILL = 0.9
# The linger's bound, checked as requests arrive: as long as the last group's commit
# (write + fsync) took, at most LINGER_MAX. Cutting a group early costs one more commit
# for the requests left out, so waiting up to one commit's time for them is never the
# worse bet. On that row the last of a group's clients came back 290 us (p50) after its
# replies were sent, and a commit takes 200-400 us on a quiet disk here, 1.4 ms (p50)
# while other processes write.
LINGER_MAX = 0.002
# With this many requests in flight there is no linger: the groups are large anyway
# (the depth-16 put row, 800 in flight, alternates two groups of ~400), and starting
# the next group at once keeps its fsync overlapping the previous group's replies.
# Lingering there too (one group of 600-750) was a wash: server CPU per put 5.8 vs 5.8
# and 5.7 vs 6.8 us, throughput -5% and +10% against the alternating groups over two
# sets of five alternating runs.
LINGER_ENOUGH = 256
# When nothing arrives at all (the clients went away) a timer ends the linger. uvloop's
# timers have a 1 ms resolution (a shorter delay fires at the next loop turn).
LINGER_TIMER = 0.001


class Writer(GroupWrite):
    """Group-commit writer over one store.

    Args:
        db: the open store (needs write_group(batches, sync=) and sync()).
        mode: "thread" (a dedicated single worker thread), "executor" (the loop's
            default executor), "aiofiles" (aiofiles.os.wrap around write_group), or
            "loop" (call write_group on the event loop: only sensible without fsync).
        metrics: where group sizes and commit latencies are recorded.
        max_depth: queued entries above which readers are paused.
        on_pressure: called with True to pause readers, False to resume them.
        linger: let the next group wait (boundedly) for the requests in flight, so one
            fsync covers them all (for sync="always": see LINGER_FILL).

    Example:
        >>> writer = Writer(db, mode="thread", metrics=Metrics())   # doctest: +SKIP
        >>> writer.submit([("put", b"k", b"v", None)], lambda res, exc: print(res, exc))
    """

    def __init__(
        self,
        db: Any,
        *,
        mode: str = "thread",
        metrics: Metrics | None = None,
        max_depth: int = 8192,
        on_pressure: Callable[[bool], None] | None = None,
        linger: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"writer mode must be one of {MODES}, not {mode!r}")
        self._db = db
        self._mode = mode
        self._metrics = metrics if metrics is not None else Metrics()
        self._max_depth = max_depth
        self._hard_depth = 4 * max_depth
        self._on_pressure = on_pressure
        self._linger = linger
        self._loop = asyncio.get_running_loop()
        self._queue: list[_Entry] = []
        self._queued_bytes = 0
        # Queued entries that are not a plain write (a sync, a watch, no ops): while
        # there are none, a group takes _write_group's plain path.
        self._special = 0
        self._scheduled = False  # a _kick is queued with call_soon
        self._running = False  # a write_group is in progress
        self._pressured = False
        self._closed = False
        # The linger (see _next): while _want > 0 the next group waits for that many
        # queued requests, until _deadline (checked on arrival) or _timer fires.
        self._want = 0
        self._deadline = 0.0
        self._commit_seconds = 0.0  # how long the last group's write_group took
        self._timer: asyncio.TimerHandle | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        # Callables run once after the current group's callbacks (see _finish).
        self.after_group: list[Callable[[], None]] = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # mode "executor"
        self._thread = _WriterThread(self._loop) if mode == "thread" else None
        self._wrapped: Any = None
        if mode == "aiofiles":
            # imported only for this mode (never the default): aiofiles and the tempfile
            # and random it brings were ~13M instructions, 2.7% of a bitcask-server start
            # (callgrind)
            import aiofiles.os

            self._wrapped = aiofiles.os.wrap(self._write_group)

    # ---- public ----

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def depth(self) -> int:
        """Entries waiting for the next group (the one being written not included)."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(
        self,
        ops: Sequence[Any],
        callback: Callback,
        nbytes: int = 0,
        sync: bool = False,
        watch: Any = None,
    ) -> bool:
        """Queue one request's ops; `callback` runs on the loop once they are durable.

        Args:
            ops: engine operations of this request (one batch: atomic) (may be empty with sync=True).
            callback: called as callback(results, None) or callback(None, exc).
            nbytes: payload size, used to bound group sizes.
            sync: force an fsync for this request's group (the `sync` method).
            watch: a bitcask.Watch (or a callable returning it when the group is
                written): the ops apply only if none of its keys was written since it
                was taken; else the callback gets (WATCH_ABORTED, None) (Redis's EXEC
                answering nil). Checked inside the engine's lock with the group.

        Returns:
            False when the writer is closed or hopelessly behind (answer BUSY /
            SHUTTING_DOWN); the callback will then never be called.
        """
        if self._closed or len(self._queue) >= self._hard_depth:
            return False
        self._queue.append((ops, callback, nbytes, sync, watch))
        self._queued_bytes += nbytes
        if sync or watch is not None or not ops:
            self._special += 1
        depth = len(self._queue)
        self._metrics.writer_depth = depth
        if depth > self._max_depth and not self._pressured:
            self._set_pressure(True)
        if not self._running and not self._scheduled:
            if self._want:
                if depth < self._want:
                    if time.perf_counter() < self._deadline:
                        return True  # lingering: the next group waits for more requests
                    self._metrics.group_linger_timeouts += 1
                self._end_linger()
            self._scheduled = True
            self._loop.call_soon(self._kick)
        return True

    def close(self) -> None:
        """Refuse further submissions; queued ones still get written (see wait_idle)."""
        self._closed = True
        if self._want and not self._running and not self._scheduled:
            self._end_linger()  # a stop does not wait for requests that will not come
            self._scheduled = True
            self._loop.call_soon(self._kick)

    async def wait_idle(self) -> None:
        """Return once nothing is queued and no write is running."""
        if not self._queue and not self._running and not self._scheduled:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._idle_waiters.append(fut)
        await fut

    async def run_on_writer_thread(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking store call (db.close) where write_group runs, off the loop."""
        if self._thread is None:
            return await self._loop.run_in_executor(self._pool, fn)
        fut: asyncio.Future[Any] = self._loop.create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc)

        self._thread.run(lambda _: fn(), None, done)
        return await fut

    def shutdown_pool(self) -> None:
        """Stop the dedicated thread (after wait_idle); blocks until it ended."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    # ---- the group commit ----

    def _kick(self) -> None:
        self._scheduled = False
        if self._want:
            self._end_linger()
        if self._running or not self._queue:
            self._maybe_idle()
            return
        group, plain = self._take()
        self._running = True
        started = time.perf_counter()
        if self._mode == "loop":
            outcomes = self._write_group(group, plain)
            self._finish(group, outcomes, started)
        elif self._mode == "aiofiles":
            assert self._wrapped is not None
            task: asyncio.Future[Any] = asyncio.ensure_future(self._wrapped(group, plain))
            task.add_done_callback(lambda t: self._after(group, t, started))
        elif self._thread is not None:
            # One hand-off to the thread and one wake-up of the loop per group.
            self._thread.run(
                self._write_plain if plain else self._write_group,
                group,
                lambda outcomes, exc: self._done(group, outcomes, exc, started),
            )
        else:
            fut = self._loop.run_in_executor(self._pool, self._write_group, group, plain)
            fut.add_done_callback(lambda f: self._after(group, f, started))

    def _take(self) -> tuple[list[_Entry], bool]:
        """The next group, and whether every entry of it is a plain write."""
        queue = self._queue
        cut = len(queue)
        if self._queued_bytes > MAX_GROUP_BYTES:
            total = 0
            for i, entry in enumerate(queue):
                total += entry[2]
                if total > MAX_GROUP_BYTES and i > 0:
                    cut = i
                    break
        if cut == len(queue):
            group, self._queue = queue, []
            self._queued_bytes = 0
            plain, self._special = not self._special, 0
        else:
            group, self._queue = queue[:cut], queue[cut:]
            self._queued_bytes = sum(entry[2] for entry in self._queue)
            self._special = sum(1 for e in self._queue if e[3] or e[4] is not None or not e[0])
            plain = all(e[0] and not e[3] and e[4] is None for e in group)
        depth = len(self._queue)
        self._metrics.writer_depth = depth
        if self._pressured and depth <= self._max_depth // 2:
            self._set_pressure(False)
        return group, plain

    def _after(self, group: list[_Entry], fut: asyncio.Future[Any], started: float) -> None:
        if fut.cancelled():
            outcomes: list[_Outcome] = [asyncio.CancelledError()] * len(group)
        elif (exc := fut.exception()) is not None:
            outcomes = [exc] * len(group)
        else:
            outcomes = fut.result()
        self._finish(group, outcomes, started)

    def _done(
        self,
        group: list[_Entry],
        outcomes: list[_Outcome] | None,
        exc: BaseException | None,
        started: float,
    ) -> None:
        """The writer thread's report (_write_group never raises: exc is a safety net)."""
        if outcomes is None:
            outcomes = [exc if exc is not None else RuntimeError("no outcome")] * len(group)
        self._finish(group, outcomes, started)

    def _finish(self, group: list[_Entry], outcomes: list[_Outcome], started: float) -> None:
        done = len(group)
        self._commit_seconds = seconds = time.perf_counter() - started
        self._metrics.group(done, seconds)
        self._running = False
        if self._mode != "loop" and self._next(done) > 0:
            # Overlap: requests that queued during this write start their write (in the
            # writer thread) before this group's replies are built here on the loop.
            self._kick()
        for entry, outcome in zip(group, outcomes, strict=True):
            try:
                if isinstance(outcome, BaseException):
                    self._metrics.writer_failures += 1
                    entry[1](None, outcome)
                else:
                    entry[1](outcome, None)
            except Exception:
                _throttle.log("callback", logging.ERROR, "write callback failed", exc_info=True)
        # Connections whose replies the callbacks completed send them now: one write per
        # connection per group, without a call_soon handle each.
        flushes, self.after_group = self.after_group, []
        for flush in flushes:
            try:
                flush()
            except Exception:
                _throttle.log(
                    "flush", logging.ERROR, "flush after a group commit failed", exc_info=True
                )
        if self._running or self._scheduled:
            return
        want = self._next(done)
        if want > 0:
            if self._mode == "loop":
                # On the loop the next group starts one turn later: no recursion, and the
                # requests decoded in that turn join it.
                self._scheduled = True
                self._loop.call_soon(self._kick)
            else:
                self._kick()
            return
        if want < 0:
            self._start_linger(-want)
        self._maybe_idle()

    def _next(self, done: int) -> int:
        """Whether the next group may start now that a group of `done` requests finished:
        > 0 yes, 0 nothing to write, -n: wait until n requests are queued (the linger).

        The requests in flight are the ones queued plus the `done` just acknowledged
        (their clients are about to send the next ones)."""
        queued = len(self._queue)
        if not self._linger or self._closed or done + queued >= LINGER_ENOUGH:
            return queued
        want = int(LINGER_FILL * (done + queued))
        return queued if queued >= want or want <= 1 else -want

    def _start_linger(self, want: int) -> None:
        self._metrics.group_lingers += 1
        self._want = want
        bound = self._linger_bound()
        self._deadline = time.perf_counter() + bound
        self._timer = self._loop.call_later(max(bound, LINGER_TIMER), self._linger_over)

    def _linger_bound(self) -> float:
        """How long the next group may wait for its requests, in seconds."""
        return min(self._commit_seconds, LINGER_MAX)

    def _end_linger(self) -> None:
        self._want = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _linger_over(self) -> None:
        """The linger's bound: start the next group with whatever is queued."""
        self._timer = None
        if not self._want:
            return
        self._want = 0
        self._metrics.group_linger_timeouts += 1
        if self._queue and not self._running and not self._scheduled:
            self._kick()

    def _maybe_idle(self) -> None:
        if self._queue or self._running or self._scheduled:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _set_pressure(self, on: bool) -> None:
        self._pressured = on
        if self._on_pressure is not None:
            try:
                self._on_pressure(on)
            except Exception:
                _throttle.log("pressure", logging.ERROR, "pressure callback failed", exc_info=True)
