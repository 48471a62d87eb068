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
- Several writes of one connection can be in flight at once (they join the same group
  commit), so deep pipelines of writes still share fsyncs.
- Fast path: with nothing queued, a read or an immediate answer is rendered at once.
- Output is gathered in `_out` and written by the owner with one transport.write per
  batch of input (`take_output`) or per completed group (`flush` via call_soon).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from protocol import ErrorInfo

from ._dispatch import DEFERRED, DONE, READ, Dispatcher, Session, error_info
from ._metrics import Metrics

__all__ = ["Pipeline", "Render"]

# render(ctx, result, error) -> bytes of the reply
Render = Callable[[Any, Any, ErrorInfo | None], bytes]


class _Slot:
    __slots__ = ("ctx", "done", "error", "method", "outcome", "render", "result", "t0")

    def __init__(self, outcome: tuple[Any, ...], render: Render, ctx: Any, method: str, t0: float):
        self.outcome = outcome
        self.render = render
        self.ctx = ctx
        self.method = method
        self.t0 = t0
        self.done = False
        self.result: Any = None
        self.error: ErrorInfo | None = None


class Pipeline:
    """Orders one connection's requests and replies.

    Args:
        dispatcher: shared method table.
        session: this connection's auth state.
        metrics: request counters.
        emit: writes reply bytes to the connection (used by `flush`).
        on_progress: called after replies were flushed from a completion (resume reading).

    Example:
        >>> p = Pipeline(dispatcher, session, metrics, transport.write, lambda: None)  # doctest: +SKIP
        >>> p.request("get", [b"k"], render_binary, 7)
        >>> transport.write(p.take_output())
    """

    __slots__ = (
        "_dispatcher",
        "_emit",
        "_flush_scheduled",
        "_inflight",
        "_loop",
        "_metrics",
        "_on_progress",
        "_out",
        "_replies",
        "_session",
        "_unstarted",
        "closed",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        session: Session,
        metrics: Metrics,
        emit: Callable[[bytes], None],
        on_progress: Callable[[], None],
    ) -> None:
        self._dispatcher = dispatcher
        self._session = session
        self._metrics = metrics
        self._emit = emit
        self._on_progress = on_progress
        self._loop = asyncio.get_running_loop()
        self._replies: deque[_Slot] = deque()  # every request not yet answered, in order
        self._unstarted: deque[_Slot] = deque()  # requests waiting for an earlier one
        self._inflight = 0  # DEFERRED requests started and not finished
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False  # the connection is gone: drop output

    @property
    def pending(self) -> int:
        """Requests received and not answered yet."""
        return len(self._replies)

    @property
    def session(self) -> Session:
        return self._session

    def request(self, method: str, params: Any, render: Render, ctx: Any) -> None:
        """Handle one decoded request; its reply is rendered with render(ctx, result, error)."""
        t0 = perf_counter()
        outcome = self._dispatcher.call(self._session, method, params)
        kind = outcome[0]
        if not self._replies and kind != DEFERRED:
            if kind == READ:
                try:
                    result, error = outcome[1](outcome[2]), None
                except Exception as exc:
                    result, error = None, error_info(exc)
            else:
                result, error = outcome[1], outcome[2]
            self._out.append(render(ctx, result, error))
            self._metrics.request(method, perf_counter() - t0, error.name if error else None)
            return
        slot = _Slot(outcome, render, ctx, method, t0)
        self._replies.append(slot)
        if kind == DONE:
            slot.result, slot.error, slot.done = outcome[1], outcome[2], True
        elif self._unstarted or (kind == READ and self._inflight):
            self._unstarted.append(slot)
        else:
            self._start(slot)
        self._collect()

    def reply_now(self, render: Render, ctx: Any, error: ErrorInfo, method: str = "-") -> None:
        """Queue an error reply in order (e.g. BUSY) without calling the dispatcher."""
        self.request_done(render, ctx, None, error, method)

    def request_done(
        self, render: Render, ctx: Any, result: Any, error: ErrorInfo | None, method: str
    ) -> None:
        """Queue an already-known answer (HTTP probes, refusals) behind earlier replies."""
        slot = _Slot((DONE, result, error), render, ctx, method, perf_counter())
        slot.result, slot.error, slot.done = result, error, True
        self._replies.append(slot)
        self._collect()

    def take_output(self) -> bytes:
        """The reply bytes gathered so far (b"" if none); the caller writes them."""
        if not self._out:
            return b""
        out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return out

    def flush(self) -> None:
        """Write gathered output now (used after completions)."""
        self._flush_scheduled = False
        data = self.take_output()
        if data and not self.closed:
            self._emit(data)
        self._on_progress()

    # ---- internals ----

    def _start(self, slot: _Slot) -> None:
        outcome = slot.outcome
        if outcome[0] == READ:
            try:
                slot.result = outcome[1](outcome[2])
            except Exception as exc:
                slot.error = error_info(exc)
            slot.done = True
        else:
            self._inflight += 1
            outcome[1](lambda result, error: self._finished(slot, result, error))

    def _finished(self, slot: _Slot, result: Any, error: ErrorInfo | None) -> None:
        slot.result, slot.error, slot.done = result, error, True
        self._inflight -= 1
        unstarted = self._unstarted
        while unstarted:
            head = unstarted[0]
            if head.outcome[0] == READ and self._inflight:
                break
            unstarted.popleft()
            self._start(head)
        self._collect()
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _collect(self) -> None:
        replies = self._replies
        metrics = self._metrics
        while replies and replies[0].done:
            slot = replies.popleft()
            error = slot.error
            self._out.append(slot.render(slot.ctx, slot.result, error))
            metrics.request(slot.method, perf_counter() - slot.t0, error.name if error else None)
