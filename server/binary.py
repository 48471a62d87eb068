"""The binary/Redis port: one asyncio.Protocol per connection, transport glue only.

Strategy / invariants:
- What the bytes mean is protocol.Connection's business (sans-IO): dialect sniffing,
  every request-shape rule, the HTTP refusal, and the fatal state. This class feeds
  it what the socket delivers and hands the events to this connection's Pipeline,
  which owns ordering (replies in request order, read-your-writes), back-pressure
  (events wait in its backlog while max_inflight requests are pending or the writer
  is over its mark) and runs requests. All replies produced while handling one chunk
  of input leave in one transport.write.
- Flow control here is only the switch: reading pauses while the Pipeline does not
  want input, and resumes when it says so (`can_resume`, at half). Pause reasons are
  bits (server/_flow.py) so that one resume never cancels another reason. The
  writer's pressure pauses only connections with writes in flight (`writing`), so
  a health check's PING on another connection is answered while the disk stalls.
- A `Close` event (fatal input, QUIT, HTTP on this port) is answered in order, after
  the requests before it; then the connection closes and nothing after it runs. The
  close lingers (`_linger`): the peer may still be sending the request that ended it,
  and closing with unread bytes makes the kernel answer with a reset, which can
  destroy the error reply before the peer reads it.
- Fairness: a connection whose chunk of input filled the read buffer and took a
  while to handle waits for the loop's next turn before it is read again
  (ReadPause.yield_turn), so every other connection is served between two chunks.
- At the connection cap the refusal line goes out at once, before the client speaks.
- The session never sees the transport: it gets a `ClientLink` made here once (the
  addresses and descriptor CLIENT LIST shows, and `kill` to close it), and both
  dispatchers' `new_session` take it. `kill` (CLIENT KILL) ends the connection as a
  `Close` event does: nothing more is read or started, the replies already due go
  out (writes already accepted are applied and answered), then the lingering close.
  KILL_GRACE after the kill it is closed whatever is left, reset if its peer has not
  taken its output (the idle sweeper's rule): a killed peer that reads nothing must
  not hold its connection until --idle-timeout.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any, cast

from protocol import TOO_MANY_CONNECTIONS_LINE
from protocol.connection import Connection

from ._flow import (
    LINGER_SECONDS,
    PAUSE_INFLIGHT,
    PAUSE_SHUTDOWN,
    PAUSE_WRITER,
    TURN_BYTES,
    TURN_SECONDS,
    ReadPause,
)
from ._pipeline import Pipeline
from ._redis_session import NO_LINK, ClientLink, redis_addr
from ._state import ServerState

__all__ = ["BinaryProtocol"]

log = logging.getLogger("bitcask.server")

# How long a killed connection (CLIENT KILL) may take to send the replies due and
# linger before it is closed anyway: past the linger's own bound, so a peer that
# reads them all is never cut short.
KILL_GRACE = 2 * LINGER_SECONDS


class BinaryProtocol(ReadPause, asyncio.Protocol):
    """One client connection on the port (binary frames or the Redis protocol)."""

    def __init__(self, state: ServerState) -> None:
        # -- server state --
        self._state = state
        self._host = state.host
        # -- connection --
        self.transport: asyncio.Transport | None = None
        self._conn = Connection(
            max_frame=state.config.max_frame,
            http_port=state.http_port,
            auth_required=state.config.auth is not None,
        )
        self._pipeline: Pipeline | None = None
        self._session: Any = None  # the Pipeline's session (auth; RESP: MULTI, watches)
        self._dispatcher: Any = None  # whose session it is: it releases it when lost
        self._link = NO_LINK  # what the sessions know of this connection (connection_made)
        self._closing = False  # no more input is used; close once replies are out
        self._linger_timer: asyncio.TimerHandle | None = None
        self._kill_timer: asyncio.TimerHandle | None = None  # KILL_GRACE, once killed
        self._peer_eof = False  # the peer half-closed: nothing to linger for
        self._farewell = b""  # the line refuse_input sends after the replies due
        # -- flow control --
        self._pause = 0  # why reading is paused: PAUSE_* bits (server/_flow.py)
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
            self._closing = True
            self._linger_refused(
                self._state.loop, self._state.lingers
            )  # a reset would destroy the line
            return
        self.last_active = self._state.loop.time()
        sock = transport.get_extra_info("socket")
        self._link = ClientLink(
            redis_addr(transport.get_extra_info("peername")),
            redis_addr(transport.get_extra_info("sockname")),
            -1 if sock is None else sock.fileno(),
            self.kill,
        )
        self._pipeline = self._new_pipeline(self._state.dispatcher)
        # Not paused for the writer's pressure: it has no write in flight (a health
        # check's PING is answered while the disk stalls; a first write holds it).

    def _new_pipeline(self, dispatcher: Any) -> Pipeline:
        state, host = self._state, self._host
        self._session = dispatcher.new_session(self._link)
        self._dispatcher = dispatcher
        return Pipeline(
            dispatcher,
            self._session,
            state.metrics,
            self._write,
            self._progress,
            high=state.config.max_inflight,
            host=host,
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._conn.discard_input()  # a partial request (up to max_frame) goes now
        self._state.held.release(self)
        self._end_linger()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._session is not None:
            self._dispatcher.end_session(self._session)  # its snapshots, watches
        if self._pipeline is not None:
            self._pipeline.discard_backlog()
            self._pipeline.closed = True
            self._host.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._pipeline is None:
            return
        self.active = True
        t0 = perf_counter()
        conn = self._conn
        limited = conn.auth_required and not self._session.authenticated
        if conn.auth_required:  # pre-AUTH limits until this session authenticated
            conn.set_authenticated(self._session.authenticated)
        if conn.dialect is None:
            conn.receive_data(data)
            if conn.dialect is not None and conn.dialect.name == "resp":
                # The Redis protocol: its own commands, same writer, limits and order.
                self._pipeline = self._new_pipeline(self._state.redis())
            events = conn.events()
        else:
            events = conn.receive(data)
        if conn.ended:
            self._closing = True  # read nothing more; close once the replies are out
        pipeline = self._pipeline
        out = pipeline.feed(events, conn.render, t0)
        while limited and not conn.ended:  # the commands held back before AUTH, in turn
            conn.set_authenticated(self._session.authenticated)  # as the last one left it
            more = conn.resume()
            if not more:
                break
            out += pipeline.feed(more, conn.render, t0)
            if conn.ended:
                self._closing = True
        if out:
            self._write(out)
        # A request unfinished: count it (server/_held.py), once the complete requests
        # before it were fed and their replies placed, so that a refusal comes after them.
        held = conn.buffered
        if held or self._held:
            self._state.held.update(self, held, self._state.loop.time(), bool(events))
        if self._closing:
            self._close_when_done()
        elif not pipeline.wants_input:
            self._set_pause(PAUSE_INFLIGHT, True)
        elif len(data) >= TURN_BYTES and perf_counter() - t0 > TURN_SECONDS:
            self.yield_turn(self._state.loop)  # one client's pipeline must not starve others

    def refuse_input(self, line: bytes) -> None:
        """The server drops this connection's unfinished request (server/_held.py: over
        --max-partial-input, or past --request-timeout): the replies already due go
        out, then `line` (one line both dialects read), then the lingering close."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self._conn.discard_input()
        self._farewell = line
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.discard_backlog()
            pipeline.stopped = True
            self._flush_now()
        self._close_when_done()

    def eof_received(self) -> bool | None:
        # A half-closed client still gets its pending replies; close once they are out.
        self._closing = self._peer_eof = True
        self._flush_now()
        if self.busy == 0:
            return None
        return True

    def kill(self) -> None:
        """CLIENT KILL (the session's ClientLink.close): read and start nothing more,
        close once the replies already due are out, or at KILL_GRACE. Called
        from a command's handler, maybe this connection's own: the close waits for
        the loop's next turn, after that command's reply was placed."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.discard_backlog()
            pipeline.stopped = True
        loop = self._state.loop
        loop.call_soon(self._close_when_done)
        self._kill_timer = loop.call_later(KILL_GRACE, self.close_idle)

    def _flush_now(self) -> None:
        if self._pipeline is not None and self._pipeline.unflushed:
            self._write(self._pipeline.take_output())

    # ---- output and flow control ----

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _progress(self) -> None:
        """Called by the Pipeline after replies went out: maybe resume reading or close."""
        pipeline = self._pipeline
        assert pipeline is not None
        if self._pause & PAUSE_INFLIGHT and pipeline.can_resume:
            self._set_pause(PAUSE_INFLIGHT, False)
        if self._pause & PAUSE_WRITER and not pipeline.writing:
            self._set_pause(PAUSE_WRITER, False)  # its writes are done: read (pings) again
        if self._closing:
            self._close_when_done()

    def _close_when_done(self) -> None:
        if self.busy == 0 and self.transport is not None:
            if self._farewell:
                self._write(self._farewell)  # after every reply due (refuse_input)
                self._farewell = b""
            self._linger()

    def _linger(self) -> None:
        self._linger_close(self._state.loop)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._pipeline is not None:
            self._pipeline.write_paused = True  # start nothing more (Pipeline.drain)

    def resume_writing(self) -> None:
        super().resume_writing()
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.write_paused = False
            if pipeline.busy:
                pipeline.flush()  # starts what waited for the peer to read, resumes

    # ---- called by the Server ----

    def pause_for_writer(self, on: bool) -> None:
        # Only a connection with writes of its own in flight stops reading: an idle
        # one's PING or GET does not wait for a stalled disk (the Pipeline holds its
        # next write, and then its input, while the pressure lasts).
        if not on or (self._pipeline is not None and self._pipeline.writing):
            self._set_pause(PAUSE_WRITER, on)
        if not on and self._pipeline is not None and self._pipeline.busy:
            self._pipeline.flush()  # starts what waited in its backlog, writes, resumes

    @property
    def authenticated(self) -> bool:
        """The connection presented the token (or none is asked), or it was killed (its
        session is logged out; KILL_GRACE closes it): the pre-AUTH deadline
        (server/_connections.py) spares it."""
        if self._kill_timer is not None:
            return True
        return self._session is not None and bool(self._session.authenticated)

    @property
    def pending(self) -> int:
        return 0 if self._pipeline is None else self._pipeline.pending

    @property
    def busy(self) -> int:
        """Requests received and not answered yet (backlog and unsent replies included)."""
        return 0 if self._pipeline is None else self._pipeline.busy

    def stop_reading_for_shutdown(self) -> None:
        """Read nothing more; requests not yet started are dropped (refused by the close)."""
        if self._pipeline is not None:
            self._pipeline.discard_backlog()
        self._set_pause(PAUSE_SHUTDOWN, True)

    def close_for_shutdown(self) -> None:
        """Close now (the server calls this once in-flight work has drained)."""
        self._closing = True
        if self._pipeline is not None:
            self._pipeline.discard_backlog()
        self._flush_now()
        if self.transport is not None:
            self.transport.close()
