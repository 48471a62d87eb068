"""Per-connection request ordering: replies in request order, read-your-writes.

Strategy / invariants (one Pipeline per connection, loop thread only):
- Every request is *called* on arrival (Dispatcher.call: auth + validation), in order.
- Replies leave in request order (`_replies` is FIFO). This costs nothing extra: a read
  behind a write must wait for that write anyway (next rule), and writes of one
  connection complete in submission order because the writer is FIFO.
- A read never runs while an earlier write of the same connection is in flight, and a
  write never starts while an earlier read of the same connection is still waiting, so
  each connection sees its requests applied one after another, as if sequential
  (`put k 1; get k; put k 2` pipelined returns 1). Waiting requests sit in `_unstarted`.
  Async work waits like a read: it may read the store when it starts (the Redis
  dialect's MSETNX checks its keys, then submits its writes in the same turn).
- Several writes of one connection can be in flight at once (they join the same group
  commit), so deep pipelines of writes still share fsyncs.
- Fast path: with nothing queued, a read or an immediate answer is rendered at once.
- Output is gathered in `_out` and written by the owner with one transport.write per
  batch of input (what `feed` returns) or per completed group (`flush` via call_soon).
- Back-pressure lives here too (`feed`): the events of a connection's input are
  started while fewer than `high` requests are pending and the writer is not over its
  mark (the mark holds only a connection with a write or async work of its own in
  flight: an idle connection's PING or GET is answered while the disk stalls, and
  its first write then holds it); the rest wait in `_backlog` (at most one read's
  worth) and are started as replies go out. The owner only asks `wants_input` / `can_resume` to pause or resume
  reading. After a terminal `Close` event nothing more is started (`stopped`).
- Reply bytes are bounded too, for a peer that sends reads and does not read the
  replies: once OUT_BUDGET bytes of replies were gathered in one turn, the rest of
  the input waits in the backlog, and nothing more starts while the owner's
  transport is paused for writing (`write_paused`, set by the owner); a drain is
  scheduled (call_soon) or runs when the transport resumes writing; reads that
  waited behind a write are started the same way (`_advance`). Without it one
  chunk of 2,000 pipelined gets of a 1 MiB value made the server buffer 2 GB and
  stall every other client (the hot path pays one len, one add, one compare per
  fast read).
- Measured, not guessed: docs/architecture.md ("Per-request cost") has the request
  path's figures before and after the fast paths here, and splits a put by layer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from protocol import ErrorCode, ErrorInfo, LocalProtocolError, Request
from protocol.connection import Close, Event, Reject

from ._dispatch import Dispatcher
from ._metrics import Metrics
from ._outcome import Async, Done, Outcome, Read, Write, error_info, make_error
from ._reply_slot import Render, _Slot
from ._session import Session

__all__ = ["Pipeline"]

OUT_BUDGET = 1 << 20
"""Reply bytes gathered in one turn before the rest of the input waits (slow readers)."""


class _NeverPressured:
    """The host of a Pipeline whose writer pressure is never asked (HTTP, tests)."""

    writer_pressured = False


_NEVER_PRESSURED = _NeverPressured()


def _raw(data: bytes, result: Any, error: ErrorInfo | None) -> bytes:
    """The Render of events whose reply the protocol Connection already encoded."""
    return data


class Pipeline:
    """Orders one connection's requests and replies.

    Args:
        dispatcher: shared method table.
        session: this connection's auth state.
        metrics: request counters.
        emit: writes reply bytes to the connection (used by `flush`).
        on_progress: called after replies were flushed from a completion (resume reading).

        high: pending requests above which events wait in the backlog (and the
            owner pauses reading); it resumes at half.
        host: whose `writer_pressured` is True while the writer's queue is over its
            mark (events wait too, on a connection with writes of its own in flight);
            server/_state.py's Host. Read as an attribute, not through a callable: a
            Python call less per pipelined write (docs/architecture.md, Per-request
            cost). None: never pressured (the HTTP port's pipelines).

    Example:
        >>> p = Pipeline(dispatcher, session, metrics, transport.write, lambda: None)  # doctest: +SKIP
        >>> conn.receive_data(data)  # doctest: +SKIP
        >>> transport.write(p.feed(conn.events(), conn.render, time.perf_counter()))  # doctest: +SKIP
    """

    __slots__ = (
        "_backlog",
        "_call",
        "_emit",
        "_flush_scheduled",
        "_group_pending",
        "_high",
        "_host",
        "_inflight",
        "_loop",
        "_low",
        "_metrics",
        "_on_progress",
        "_out",
        "_replies",
        "_session",
        "_submit",
        "_unstarted",
        "_writer",
        "closed",
        "stopped",
        "write_paused",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        session: Session,
        metrics: Metrics,
        emit: Callable[[bytes], None],
        on_progress: Callable[[], None],
        *,
        high: int = 1024,
        host: Any = None,
    ) -> None:
        self._call = dispatcher.call
        self._writer = dispatcher.writer
        self._submit = dispatcher.writer.submit
        self._session = session
        self._metrics = metrics
        self._emit = emit
        self._on_progress = on_progress
        self._high = high
        self._low = max(1, high // 2)
        self._host = _NEVER_PRESSURED if host is None else host
        self._loop = asyncio.get_running_loop()
        # decoded events not started yet (back-pressure), with their arrival time
        self._backlog: deque[tuple[Event, Render, float]] = deque()
        self.stopped = False  # a Close was handled: nothing more is started
        # Every request not yet answered, in order.
        self._replies: deque[_Slot] = deque()
        self._unstarted: deque[_Slot] = deque()  # requests waiting for an earlier one
        self._inflight = 0  # Write/Async requests started and not finished
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._group_pending = False  # _group_done is registered for the current group
        self.closed = False  # the connection is gone: drop output
        self.write_paused = False  # the owner's transport buffer is full: start nothing

    @property
    def pending(self) -> int:
        """Requests received and not answered yet."""
        return len(self._replies)

    @property
    def busy(self) -> int:
        """Requests received and not answered yet (backlog and unsent replies included)."""
        return len(self._replies) + len(self._backlog) + bool(self._out)

    @property
    def writing(self) -> bool:
        """Writes (or async work) of this connection are in flight."""
        return self._inflight > 0

    @property
    def wants_input(self) -> bool:
        """False while events wait or `high` requests are pending: pause reading."""
        return not self._backlog and len(self._replies) < self._high

    @property
    def can_resume(self) -> bool:
        """True once reading paused for in-flight work may resume (nothing waits, half)."""
        return not self._backlog and len(self._replies) <= self._low

    @property
    def unflushed(self) -> bool:
        """Reply bytes are gathered and not yet handed to the transport."""
        return bool(self._out)

    def feed(self, events: list[Event], render: Render, t0: float) -> bytes:
        """Start a connection's events in order, as far as back-pressure allows.

        A Request runs (replies rendered with `render`); a Reject and a Close are
        answered in their turn with the bytes they carry; after a Close nothing more
        is started. What cannot start now waits in the backlog.

        Returns:
            The reply bytes ready now (`take_output`), b"" if none: the owner writes
            them. Returned here, not fetched by the owner: one call less per read
            (every read of the depth-1 rows of bench/server.py).
        """
        if self.stopped:
            return self.take_output()
        backlog = self._backlog
        if backlog:
            backlog.extend((event, render, t0) for event in events)
            self.drain()
            return self.take_output()
        replies, high, host = self._replies, self._high, self._host
        call, session, place = self._call, self._session, self._place
        out, unstarted = self._out, self._unstarted
        # Reads answered at once, counted once per run of one method (metrics).
        now_method: str | None = None
        now_n = 0
        # Writer pressure holds only a connection with writes of its own in flight: a
        # PING or GET of an idle connection (a health check) is answered meanwhile.
        blocked = self._inflight > 0 and host.writer_pressured
        last = len(events) - 1
        size = 0  # reply bytes of fast reads gathered in this call (OUT_BUDGET)
        for i, event in enumerate(events):
            if blocked or len(replies) >= high:
                backlog.extend((rest, render, t0) for rest in events[i:])
                break
            if type(event) is not Request:
                self._event(event, render, t0)
                continue
            method = event.method
            outcome = call(session, method, event.params)
            if type(outcome) is Write and not unstarted:
                # The write fast path, the one place it lives (every put of the put rows
                # of bench/server.py): straight to the writer, as _place's general path
                # would, without its call and type tests. Its reply cannot complete the
                # head of the queue now (that needs the writer's callback) unless the
                # writer refused it at once (_refuse). Only a submission can put the
                # writer over its mark, and only a next event cares.
                slot = _Slot(self, outcome, render, event, method, t0)
                replies.append(slot)
                self._inflight += 1
                if not self._submit(outcome.ops, slot, outcome.nbytes, outcome.sync, outcome.watch):
                    self._refuse(slot)
                if i != last:
                    blocked = host.writer_pressured
                continue
            if type(outcome) is Read and not replies:
                # The read fast path, the one place it lives: a read with nothing
                # pending before it is run and rendered here, without a slot, and its
                # latency is recorded once per run of reads. It saves the request()
                # frame, a perf_counter and a metrics call per read on the depth-16
                # get row of bench/server.py: 33.0k -> 29.4k instructions per get
                # (callgrind, in-process feed of 16 pipelined gets, engine included).
                # The checks are Dispatcher.call's (the same call as every request);
                # anything unusual (the read raises, the reply cannot be encoded)
                # goes through _answer_now like any other request.
                try:
                    result = outcome.fn(outcome.arg)
                except Exception as exc:
                    self._answer_now(Done(None, error_info(exc)), method, render, event, t0)
                    continue
                try:
                    piece = render(event, result, None)
                except LocalProtocolError:  # renders the error instead, and counts it
                    self._answer_now(Done(result, None), method, render, event, t0)
                    continue
                out.append(piece)
                if method != now_method:
                    if now_n:
                        self._metrics.requests_done(now_method, perf_counter() - t0, now_n)  # type: ignore[arg-type]
                    now_method, now_n = method, 0
                now_n += 1
                size += len(piece)
                if size >= OUT_BUDGET and i != last:
                    # a slow reader's pipelined reads: the rest waits (module header)
                    backlog.extend((rest, render, t0) for rest in events[i + 1 :])
                    self._schedule_flush()
                    break
                continue
            place(outcome, method, render, event, t0)
            if type(outcome) is not Done and i != last:
                # only a submission can put the writer over its mark
                blocked = self._inflight > 0 and host.writer_pressured
        if now_n:
            self._metrics.requests_done(now_method, perf_counter() - t0, now_n)  # type: ignore[arg-type]
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)  # take_output, inline
        out.clear()
        return data

    def drain(self) -> None:
        """Start backlogged events while back-pressure allows (after progress)."""
        backlog, replies, high, host, out = (
            self._backlog,
            self._replies,
            self._high,
            self._host,
            self._out,
        )
        size = sum(map(len, out))
        while (
            backlog
            and not self.stopped
            and len(replies) < high
            and not (self._inflight and host.writer_pressured)
        ):
            if self.write_paused:
                return  # the owner flushes again when its transport resumes writing
            if size >= OUT_BUDGET:
                self._schedule_flush()  # after this turn's output went out
                return
            n = len(out)
            event, render, t0 = backlog.popleft()
            self._event(event, render, t0)
            size += sum(map(len, out[n:]))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def discard_backlog(self) -> None:
        """Drop the events not started yet (shutdown, connection lost)."""
        self._backlog.clear()

    def _event(self, event: Event, render: Render, t0: float) -> None:
        if type(event) is Request:
            self.request(event.method, event.params, render, event, t0)
        elif type(event) is Reject:
            self.request_done(_raw, event.data, None, event.error, "rejected")
        else:  # Close: answered in its turn, then nothing more starts
            assert type(event) is Close
            label = "protocol_error" if event.error is not None else "quit"
            self.request_done(_raw, event.data, None, event.error, label)
            self.stopped = True
            self._backlog.clear()

    def request(self, method: str, params: Any, render: Render, ctx: Any, t0: float) -> None:
        """Handle one decoded request (received at t0, perf_counter seconds).

        Its reply is rendered with render(ctx, result, error) when its turn comes.
        """
        self._place(self._call(self._session, method, params), method, render, ctx, t0)

    def _answer_now(
        self, outcome: Outcome, method: str, render: Render, ctx: Any, t0: float
    ) -> None:
        """Nothing earlier is pending: run a Read (or take a Done) and render it now."""
        if type(outcome) is Read:
            try:
                result, error = outcome.fn(outcome.arg), None
            except Exception as exc:
                result, error = None, error_info(exc)
        else:
            assert type(outcome) is Done
            result, error = outcome.result, outcome.error
        try:
            self._out.append(render(ctx, result, error))
        except LocalProtocolError as exc:  # e.g. a reply over the frame limit
            error = error_info(exc)
            self._out.append(render(ctx, None, error))
        self._metrics.request(method, perf_counter() - t0, error.name if error else None)

    def _place(self, outcome: Outcome, method: str, render: Render, ctx: Any, t0: float) -> None:
        """Answer, start or queue one request's outcome, in its connection's order."""
        kind = type(outcome)
        if (kind is Read or kind is Done) and not self._replies:
            self._answer_now(outcome, method, render, ctx, t0)
            return
        slot = _Slot(self, outcome, render, ctx, method, t0)
        self._replies.append(slot)
        if type(outcome) is Done:
            slot.result, slot.error, slot.done = outcome.result, outcome.error, True
        elif self._unstarted or ((kind is Read or kind is Async) and self._inflight):
            self._unstarted.append(slot)
            return
        else:
            self._start(slot)
        if self._replies[0].done:
            self._collect()

    def request_done(
        self, render: Render, ctx: Any, result: Any, error: ErrorInfo | None, method: str
    ) -> None:
        """Queue an already-known answer (HTTP probes, refusals) behind earlier replies."""
        slot = _Slot(self, Done(result, error), render, ctx, method, perf_counter())
        slot.result, slot.error, slot.done = result, error, True
        self._replies.append(slot)
        self._collect()

    def take_output(self) -> bytes:
        """The reply bytes gathered so far (b"" if none); the caller writes them."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def flush(self) -> None:
        """Write gathered output now (used after completions); start what waited."""
        self._flush_scheduled = False
        if self._unstarted and not self._inflight:  # reads held back by OUT_BUDGET
            self._advance()
        if self._backlog:
            self.drain()
        out = self._out
        if out:  # take_output, inline: flush runs once per connection per group
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if not self.closed:
                self._emit(data)
        self._on_progress()

    # ---- internals ----

    def _start(self, slot: _Slot) -> None:
        outcome = slot.outcome
        if type(outcome) is Read:
            try:
                slot.result = outcome.fn(outcome.arg)
            except Exception as exc:
                slot.error = error_info(exc)
            slot.done = True
            return
        self._inflight += 1
        if type(outcome) is Write:
            if not self._submit(outcome.ops, slot, outcome.nbytes, outcome.sync, outcome.watch):
                self._refuse(slot)
        else:
            assert type(outcome) is Async
            outcome.start(slot.settle)

    def _refuse(self, slot: _Slot) -> None:
        """The writer refused a submission (closed, or hopelessly behind)."""
        slot.outcome_failed()
        if self._writer.closed:
            slot.settle(None, make_error(ErrorCode.SHUTTING_DOWN, "shutting down"))
        else:
            slot.settle(None, make_error(ErrorCode.BUSY, "writer queue full; retry later"))

    def _finished(self, slot: _Slot) -> None:
        """One Async request or refused submission finished (not a group commit)."""
        slot.done = True
        self._inflight -= 1
        self._advance()
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _group_done(self) -> None:
        """Run by the writer once per group commit that completed writes of ours."""
        self._group_pending = False
        if self._unstarted:
            self._advance()
        else:
            self._collect()  # what _advance does with nothing waiting, one call less
        if self._out and not self._flush_scheduled:
            self.flush()  # one write per connection per group, no call_soon handle

    def _advance(self) -> None:
        """Start the requests that were waiting for a finished one; gather replies."""
        unstarted = self._unstarted
        size = 0  # bytes read for replies in this call (OUT_BUDGET)
        while unstarted:
            head = unstarted[0]
            if (type(head.outcome) is Read or type(head.outcome) is Async) and self._inflight:
                break
            if self.write_paused:
                break  # the owner flushes again when its transport resumes writing
            unstarted.popleft()
            self._start(head)
            if type(head.outcome) is Read:
                result = head.result
                if type(result) is bytes:
                    size += len(result)
                elif type(result) is list:  # mget, scan
                    size += sum(len(item) for item in result if type(item) is bytes)
                if size >= OUT_BUDGET and unstarted:
                    self._schedule_flush()  # the rest after this turn's output went out
                    break
        self._collect()

    def _collect(self) -> None:
        replies = self._replies
        if not replies or not replies[0].done:
            return
        now = perf_counter()
        record = self._metrics.request
        out = self._out
        # Successes are counted once per run of one method received at one time (a
        # pipelined batch): one metrics call per batch instead of one per reply.
        run_method: str | None = None
        run_t0 = 0.0
        run_n = 0
        while replies and replies[0].done:
            slot = replies.popleft()
            error = slot.error
            try:
                out.append(slot.render(slot.ctx, slot.result, error))
            except LocalProtocolError as exc:  # e.g. a reply over the frame limit
                error = error_info(exc)
                out.append(slot.render(slot.ctx, None, error))
            if error is not None:
                record(slot.method, now - slot.t0, error.name)
            elif slot.t0 == run_t0 and slot.method == run_method:
                run_n += 1
            else:
                if run_n:
                    self._metrics.requests_done(run_method, now - run_t0, run_n)  # type: ignore[arg-type]
                run_method, run_t0, run_n = slot.method, slot.t0, 1
        if run_n:
            self._metrics.requests_done(run_method, now - run_t0, run_n)  # type: ignore[arg-type]
