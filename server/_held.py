"""Partial input: the bytes all connections hold for requests not complete yet.

Strategy / invariants:
- One PartialInput per server (in its ServerState) owns the total: the bytes held in
  unfinished requests across every connection of both ports (a partial binary frame,
  a partial Redis command, an HTTP body still arriving). The per-connection limit
  (--max-frame) alone let 1024 connections hold 65 MiB each (66 GiB); the total is
  bounded by --max-partial-input. When a chunk would take the total over it, the
  connection holding the most partial input is refused (``refuse_input``: a one-line
  error, then the close) and the others go on. The bound is at least one
  --max-frame, so the largest single request always fits.
- A connection reports what it holds after every chunk that leaves a request
  unfinished, and once more after the chunk that completes it (``held`` was
  non-zero); the common chunk ends on a request's last byte: nothing to count then.
  The hot path pays one read of the dialect's buffer length and one test of
  ``_held``. A chunk that completes some requests and starts the next counts that
  tail too: a pipelining client's write cut by TCP, or a slow sender's first
  request sent whole, left it uncounted and its deadline never started.
- A request started must be complete within --request-timeout (``held_since``,
  checked by the server's sweeper, server/_connections.py): input arriving at one
  byte a second is activity for --idle-timeout but not progress towards a deadline.
  The window belongs to the request: a chunk that completes the held request and
  starts another starts the new one's window (a client pipelining for longer than
  the timeout, its writes cut mid-frame, is never dropped).
- Time the server spent not reading a connection (its own pauses, not the peer's
  unread replies) does not count towards the deadline: the window starts again.
- The holders are the connections with ``_held`` > 0: picking the largest costs a
  pass over them, only when the bound is crossed.
"""

from __future__ import annotations

from typing import Any

from protocol.refusals import PARTIAL_INPUT_LINE, REQUEST_TIMEOUT_LINE

from ._flow import PAUSE_TRANSPORT
from ._metrics import Metrics

__all__ = ["PARTIAL_INPUT_LINE", "REQUEST_TIMEOUT_LINE", "PartialInput"]


class PartialInput:
    """The server's count of bytes held in unfinished requests, and its bound.

    Args:
        limit: --max-partial-input, bytes.
        metrics: the server's counters (the gauge and the refusals are kept there).

    Example:
        >>> class C:
        ...     _held = 0
        ...     held_since = 0.0
        ...     refused = None
        ...     def refuse_input(self, line): self.refused = line
        >>> p, a, b = PartialInput(100, Metrics()), C(), C()
        >>> p.update(a, 60, 1.0); p.update(b, 30, 1.0); p.total
        90
        >>> p.update(b, 50, 2.0); a.refused is not None, b.refused, p.total
        (True, None, 50)
    """

    __slots__ = ("_holders", "limit", "metrics", "total")

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.metrics = metrics
        self.total = 0
        self._holders: set[Any] = set()

    def update(self, conn: Any, held: int, now: float, started: bool = False) -> None:
        """`conn` now holds `held` bytes of unfinished requests (0: none); over the
        bound, the largest holder (maybe `conn`) is refused until the total fits.
        `started`: the chunk just read completed requests, so what is held now is a
        request begun in it, whose --request-timeout window starts at `now`."""
        before = conn._held
        if started and held:
            conn.held_since = now
        if held == before:
            return
        self.total += held - before
        conn._held = held
        if held:
            if not before:
                conn.held_since = now
                self._holders.add(conn)
        else:
            conn.held_since = 0.0
            self._holders.discard(conn)
        self.metrics.partial_input_bytes = self.total
        while self.total > self.limit and self._holders:
            largest = max(self._holders, key=_held_of)
            self.release(largest)
            self.metrics.partial_input_refused += 1
            largest.refuse_input(PARTIAL_INPUT_LINE)

    def release(self, conn: Any) -> None:
        """`conn` holds nothing any more (it completed, or it is closed or refused)."""
        if conn._held:
            self.update(conn, 0, 0.0)

    def expired(self, now: float, timeout: float) -> list[Any]:
        """The holders whose unfinished request started over `timeout` seconds ago.

        A connection we stopped reading (the writer's pressure, its requests in flight,
        its turn: any pause but the peer's unread replies) cannot finish its request:
        its window starts again, whole, as the HTTP timers do."""
        out = []
        for conn in self._holders:
            if conn._pause & ~PAUSE_TRANSPORT:
                conn.held_since = now
            elif now - conn.held_since > timeout:
                out.append(conn)
        return out


def _held_of(conn: Any) -> int:
    return int(conn._held)
