"""One request's place in its connection's reply queue, and the writer's callback.

Strategy / invariants:
- A `_Slot` is made for each request that cannot be answered at once (server/_pipeline.py's
  fast paths make none): it sits in the Pipeline's `_replies` (FIFO, request order)
  and in `_unstarted` while an earlier request must finish first, holds the outcome
  to start, how to render the reply and when the request arrived (metrics).
- It is the writer's callback itself (`__call__`): an object with slots, not a closure
  per write. The callback only records the result and counts the write finished; the
  Pipeline advances once per group commit (`_group_done`, registered on the writer's
  `after_group` by the first slot of that connection to finish in the group).
- Async work (merge, snapshots) and refused submissions finish through `settle`.
- The slot touches its Pipeline's private counters (`_inflight`, `_group_pending`)
  directly: the two are one mechanism split for reading, and the callback runs for
  every write (an attribute each, no method call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from protocol import ErrorInfo

from ._outcome import Outcome, Write, always_true, error_info
from ._writer import Writer

__all__ = ["Render"]

# render(ctx, result, error) -> bytes of the reply
Render = Callable[[Any, Any, ErrorInfo | None], bytes]


class SlotOwner(Protocol):
    """What a slot uses of its connection's Pipeline (server/_pipeline.py, which
    imports this module: the type is named here, not imported)."""

    _inflight: int
    _group_pending: bool
    _writer: Writer

    def _group_done(self) -> None: ...

    def _finished(self, slot: _Slot) -> None: ...


class _Slot:
    """One request waiting for its turn or its result. Called by the writer when done."""

    __slots__ = ("ctx", "done", "error", "method", "outcome", "pipeline", "render", "result", "t0")

    def __init__(
        self,
        pipeline: SlotOwner,
        outcome: Outcome,
        render: Render,
        ctx: Any,
        method: str,
        t0: float,
    ) -> None:
        self.pipeline = pipeline
        self.outcome = outcome
        self.render = render
        self.ctx = ctx
        self.method = method
        self.t0 = t0
        self.done = False
        self.result: Any = None
        self.error: ErrorInfo | None = None

    def __call__(self, results: list[Any] | None, exc: BaseException | None) -> None:
        """The writer's callback (an object, not a closure per request).

        Only records the outcome: the pipeline advances once per group commit, after
        all of the group's callbacks ran (Pipeline._group_done via writer.after_group).
        """
        if exc is None:  # only a Write is submitted; results is then a list
            try:
                # (no typing.cast here: it is a function call per write)
                shape = self.outcome.shape  # type: ignore[union-attr]
                # always_true's answer without the call (every put; _outcome.py)
                self.result = True if shape is always_true else shape(results or [])
            except Exception as err:  # an op's own answer: NotANumberError, NoSuchKeyError
                self.error = error_info(err)
        else:
            self.error = error_info(exc)
            self.outcome_failed()
        self.done = True
        pipeline = self.pipeline
        pipeline._inflight -= 1
        if not pipeline._group_pending:
            pipeline._group_pending = True
            pipeline._writer.after_group.append(pipeline._group_done)

    def outcome_failed(self) -> None:
        """A Write the writer failed or refused: its `failed` hook (a commit's watch)."""
        outcome = self.outcome
        if type(outcome) is Write and outcome.failed is not None:
            outcome.failed()

    def settle(self, result: Any, error: ErrorInfo | None) -> None:
        """The callback of Async work (merge) and of refused submissions."""
        self.result, self.error = result, error
        self.pipeline._finished(self)
