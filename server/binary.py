"""The binary/inline port: one asyncio.Protocol per connection, transport glue only.

Strategy / invariants:
- What the bytes mean is protocol.Connection's business (sans-IO): dialect sniffing,
  every request-shape rule, the HTTP refusal, and the fatal state. This class feeds
  it what the socket delivers and hands each event to this connection's Pipeline,
  which owns ordering (replies in request order, read-your-writes) and runs requests.
  All replies produced while handling one chunk of input leave in one transport.write.
- Back-pressure without errors: events are handled while fewer than max_inflight are
  pending here and the writer queue is below its mark. Past that, the rest of the
  chunk's events wait in `_backlog` (at most one read's worth), reading pauses, and
  the backlog is handled again as replies go out (`_progress`) or the writer catches
  up. Reading resumes once the backlog is empty and pending is at half. Pause reasons
  are bits (server/_flow.py) so that one resume never cancels another reason.
- A `Close` event (fatal input, QUIT, HTTP on this port) is answered in order, after
  the requests before it; then the connection closes and nothing after it runs.
- At the connection cap the refusal line goes out at once, before the client speaks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import Any, cast

from protocol import TOO_MANY_CONNECTIONS_LINE, ErrorInfo, Request
from protocol.connection import Close, Connection, Event, Reject

from ._flow import PAUSE_INFLIGHT, PAUSE_SHUTDOWN, PAUSE_WRITER, ReadPause
from ._pipeline import Pipeline
from ._state import ServerState

__all__ = ["BinaryProtocol"]

log = logging.getLogger("bitcask.server")

MAX_INLINE_LINE = 1024 * 1024  # an inline command (or HTTP request line) longer is garbage


def _raw(data: bytes, result: Any, error: ErrorInfo | None) -> bytes:
    """The Render of events whose reply the protocol Connection already encoded."""
    return data


class BinaryProtocol(ReadPause, asyncio.Protocol):
    """One client connection on the binary port (binary frames or inline text)."""

    def __init__(self, state: ServerState) -> None:
        # -- server state --
        self._state = state
        self._host = state.host
        # -- connection --
        self.transport: asyncio.Transport | None = None
        self._conn = Connection(
            max_frame=state.config.max_frame, max_line=MAX_INLINE_LINE, http_port=state.http_port
        )
        self._pipeline: Pipeline | None = None
        self._closing = False  # no more input is read; close once replies are out
        self._stopped = False  # a Close event was handled: drop what follows
        # -- flow control --
        self._backlog: deque[tuple[Event, float]] = deque()  # decoded, not yet handled
        self._pause = 0  # why reading is paused: PAUSE_* bits (server/_flow.py)
        self._high = state.config.max_inflight
        self._low = max(1, self._high // 2)
        # -- idle timeout (checked by the server's sweeper) --
        self.active = True
        self.last_active = 0.0

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        if not self._host.admit(self):
            # At once, in a line both dialects read (protocol/refusals.py).
            transport.write(TOO_MANY_CONNECTIONS_LINE)
            transport.close()
            self._closing = True
            return
        state = self._state
        self.last_active = state.loop.time()
        self._pipeline = Pipeline(
            state.dispatcher,
            state.dispatcher.new_session(),
            state.metrics,
            self._write,
            self._progress,
        )
        if self._host.writer_pressured:
            self.pause_for_writer(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._backlog.clear()
        if self._pipeline is not None:
            self._pipeline.closed = True
            self._host.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._pipeline is None:
            return
        self.active = True
        t0 = perf_counter()
        conn = self._conn
        conn.receive_data(data)
        if conn.ended:
            self._closing = True  # read nothing more; close once the replies are out
        self._run(conn.events(), t0)

    def eof_received(self) -> bool | None:
        # A half-closed client still gets its pending replies; close once they are out.
        self._closing = True
        self._flush_now()
        if self.pending == 0 and not self._backlog:
            return None
        return True

    def _flush_now(self) -> None:
        if self._pipeline is not None and self._pipeline.unflushed:
            self._write(self._pipeline.take_output())

    # ---- handling events ----

    def _run(self, events: list[Event], t0: float) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        if self._backlog:
            self._backlog.extend((event, t0) for event in events)
            self._drain()
        else:
            # The hot loop: requests go straight to the pipeline (what _handle does for
            # them, inlined: it saves a call per request); other events to _handle.
            host, high = self._host, self._high
            request, render = pipeline.request, self._conn.render
            for i, event in enumerate(events):
                if pipeline.pending >= high or host.writer_pressured:
                    self._backlog.extend((rest, t0) for rest in events[i:])
                    break
                if type(event) is Request:
                    request(event.method, event.params, render, event, t0)
                else:
                    self._handle(event, t0)
        self._after_input()

    def _drain(self) -> None:
        """Handle backlogged events while limits allow."""
        pipeline = self._pipeline
        assert pipeline is not None
        backlog = self._backlog
        while (
            backlog
            and not self._stopped
            and pipeline.pending < self._high
            and not self._host.writer_pressured
        ):
            event, t0 = backlog.popleft()
            self._handle(event, t0)

    def _handle(self, event: Event, t0: float) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        if type(event) is Request:  # its reply is rendered in the connection's dialect
            pipeline.request(event.method, event.params, self._conn.render, event, t0)
        elif type(event) is Reject:
            pipeline.request_done(_raw, event.data, None, event.error, "rejected")
        else:  # Close: answered in its turn, then nothing more runs
            assert type(event) is Close
            label = "protocol_error" if event.error is not None else "quit"
            pipeline.request_done(_raw, event.data, None, event.error, label)
            self._stop_reading()

    def _stop_reading(self) -> None:
        self._closing = True
        self._stopped = True
        self._backlog.clear()

    # ---- output and flow control ----

    def _after_input(self) -> None:
        pipeline = self._pipeline
        assert pipeline is not None and self.transport is not None
        out = pipeline.take_output()
        if out:
            self.transport.write(out)
        if self._closing:
            self._close_when_done()
        elif self._backlog or pipeline.pending >= self._high:
            self._set_pause(PAUSE_INFLIGHT, True)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _progress(self) -> None:
        """Called after replies went out: handle the backlog, maybe resume reading."""
        pipeline = self._pipeline
        assert pipeline is not None
        if self._backlog:
            self._drain()
            out = pipeline.take_output()
            if out:
                self._write(out)
        if self._pause & PAUSE_INFLIGHT and not self._backlog and pipeline.pending <= self._low:
            self._set_pause(PAUSE_INFLIGHT, False)
        if self._closing:
            self._close_when_done()

    def _close_when_done(self) -> None:
        if self.pending == 0 and not self._backlog and self.transport is not None:
            self.transport.close()

    # ---- called by the Server ----

    def pause_for_writer(self, on: bool) -> None:
        self._set_pause(PAUSE_WRITER, on)
        if not on and self._backlog and self._pipeline is not None:
            self._progress()

    @property
    def pending(self) -> int:
        return 0 if self._pipeline is None else self._pipeline.pending

    @property
    def busy(self) -> int:
        """Requests received and not answered yet (backlog and unsent replies included)."""
        unsent = self._pipeline is not None and self._pipeline.unflushed
        return self.pending + len(self._backlog) + unsent

    def stop_reading_for_shutdown(self) -> None:
        """Read nothing more; requests not yet started are dropped (refused by the close)."""
        self._backlog.clear()
        self._set_pause(PAUSE_SHUTDOWN, True)

    def close_idle(self) -> None:
        """The idle timeout expired: close without a reply."""
        if self.transport is not None:
            self._closing = True
            self.transport.close()

    def close_for_shutdown(self) -> None:
        """Close now (the server calls this once in-flight work has drained)."""
        self._closing = True
        self._backlog.clear()
        self._flush_now()
        if self.transport is not None:
            self.transport.close()
