"""The HTTP adapter: an httptools-based asyncio.Protocol, one per connection (uvicorn style).

Strategy / invariants:
- httptools (llhttp) parses, through the callbacks of RequestParsing
  (server/_http_parse.py: the limits, the head's checks); on a whole request this
  class hands it to _http_routes.route(). /kv requests then go through this
  connection's Pipeline exactly like binary requests (same dispatcher, same writer
  queue, same limits); probe responses are queued in the same Pipeline so pipelined
  HTTP/1.1 responses always leave in request order.
- A request refused while it is parsed (a callback raised Reject) is answered with
  `connection: close` once the replies before it are out.
- A connection refused at accept (the cap, draining) gets its 503 and lingers like
  any close, within the bound of `_flow.ReadPause._linger_refused`. Past the cap, up
  to PROBE_RESERVE connections are admitted for probes only (server/_connections.py): one
  request each, answered if it is a probe, /metrics or /stats, else that 503.
- Closing lingers (the rule both protocols share, `_flow.ReadPause._linger_close`):
  the reply that ends a connection (a 413 for a body still arriving, a 400,
  `connection: close`) is followed by a half-close, and what the peer still sends is
  read and dropped until its EOF or LINGER_SECONDS; closing with unread input makes
  the kernel answer with a reset that destroys the reply before a client that writes
  its whole body first (http.client, requests) reads it. A peer that half-closes after its requests still gets every reply.
- Upgrade (and CONNECT) requests are answered as plain HTTP/1.1 and then the
  connection closes (server/_http_parse.py says why). A refusal decided while a HEAD
  request is parsed goes out without its body, as every reply to HEAD.
- Once a reply has announced the close, nothing more is answered (not even a 400 for the
  bytes after it).
- Timers (loop.call_later, at most one armed at a time): keep-alive (idle between
  requests, also the wait for the first byte), header deadline from the first byte of a
  request (slowloris: 408), body silence while a body trickles in (408). None of them
  runs out while reading is paused for a reason of ours (not the peer's unread
  replies): it starts again, whole, and again when reading resumes.
- Fairness: a chunk of input that filled the read buffer and took a while to handle
  makes the connection wait for the loop's next turn (ReadPause.yield_turn), as on
  the binary port: without it 200,000 pipelined GETs on one HTTP connection let
  96,000-118,000 of them through between two INFOs of a Redis connection
  (tests/server/test_http_fairness.py).
- Back-pressure: reading pauses while too many requests wait for replies here, while
  the writer queue is over its mark (only on a connection that has sent a /kv request:
  probes, /metrics and /stats never wait for a stalled disk, so a liveness probe does
  not fail because the disk is slow), or while the transport's write buffer is full.
  A chunk already read may hold thousands of pipelined requests: each one's reply is
  handed to the transport as soon as it is rendered, and once the transport says its
  buffer is full (pause_writing) the rest of the chunk's requests (and a refusal
  after them) wait in `_waiting`, parsed but not run, until it drains
  (resume_writing). Without it, 2,000 pipelined GETs of a 1 MiB value from a peer
  that does not read made the server render them all at once (1.4 GB).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import Any, cast

import httptools

from protocol import ErrorCode, ErrorInfo

from ._flow import (
    PAUSE_INFLIGHT,
    PAUSE_SHUTDOWN,
    PAUSE_TRANSPORT,
    PAUSE_WRITER,
    TURN_BYTES,
    TURN_SECONDS,
    ReadPause,
)
from ._held import REQUEST_TIMEOUT_LINE
from ._http_parse import RequestParsing
from ._http_routes import (
    KvCall,
    KvContext,
    Request,
    Response,
    error_response,
    render_kv,
    response,
    route,
    simple_error,
)
from ._metrics import route_label
from ._pipeline import Pipeline
from ._session import Session
from ._state import ServerState

__all__ = ["HttpProtocol"]

MAX_HTTP_INFLIGHT = 64  # pipelined HTTP requests waiting for replies before reading pauses


class HttpProtocol(RequestParsing, ReadPause, asyncio.Protocol):
    """One HTTP/1.1 client connection."""

    def __init__(self, state: ServerState) -> None:
        # -- server state --
        self._state = state
        self._host = state.host
        self._loop = state.loop
        cfg = state.config
        # -- timeouts and limits --
        self._keepalive = cfg.http_keepalive
        self._header_timeout = cfg.http_header_timeout
        self._body_timeout = cfg.http_body_timeout
        self._timer: asyncio.TimerHandle | None = None
        # -- per-connection --
        self.transport: asyncio.Transport | None = None
        self._pipeline: Pipeline | None = None
        self._closing = False  # no more requests: close once replies are out
        self._pause = 0  # why reading is paused: PAUSE_* bits (server/_flow.py)
        self._kv = False  # a /kv request came: the writer's pressure pauses this connection
        self._continue = False  # a 100 Continue is owed once the earlier replies are out
        self._peer_eof = False  # the peer half-closed: nothing to linger for
        self._probes_only = False  # admitted past the cap: probes only, one request
        self._linger_timer: asyncio.TimerHandle | None = None
        # parsed while the peer did not read its replies: run once it does, in order
        self._waiting: deque[Callable[[], None]] = deque()
        # -- per-request (and the parser's, server/_http_parse.py) --
        self._init_parsing(state)
        self._in_request = False
        self._request_window = 0.0  # the header deadline, then the body's silence limit

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        if not self._host.admit(self):
            # past the cap: a liveness probe must still be answered (server/_connections.py)
            self._probes_only = self._host.admit_probe(self)
            refused = not self._probes_only
        else:
            refused = False
        if refused:
            resp = simple_error(503, ErrorCode.TOO_MANY_CONNECTIONS, "too many connections")
            transport.write(response(resp, keep_alive=False))
            statuses = self._state.metrics.http_requests
            statuses[503] = statuses.get(503, 0) + 1
            self._closing = True
            self._linger_refused(self._loop, self._state.lingers)  # a reset would destroy the 503
            return
        # HTTP auth is per request (Bearer), checked in route(); the pipeline session is open.
        self._pipeline = Pipeline(
            self._state.dispatcher,
            Session(True),
            self._state.metrics,
            self._write,
            self._progress,
        )
        self._arm(self._keepalive, self._idle_expired)
        if self._host.writer_pressured:
            self.pause_for_writer(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._drop_request()  # 4 PUTs of 40 MiB cut short held 160 MB until a full GC
        self._state.held.release(self)
        self._waiting.clear()
        self._disarm()
        self._end_linger()
        if self._pipeline is not None:
            self._pipeline.closed = True
            self._host.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._pipeline is None:
            return
        self.active = True  # for the idle sweeper (server/_flow.py)
        t0 = perf_counter()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._closing:  # the bytes after a reply that announced the close
                self._flush_output()
            else:
                self._parse_failed(exc)
        else:
            if self._in_request or self._held:  # a body unfinished: count it (server/_held.py)
                held = self._body_size if self._body else 0
                self._state.held.update(self, held, self._loop.time())
            self._flush_output()
            if len(data) >= TURN_BYTES and perf_counter() - t0 > TURN_SECONDS:
                self.yield_turn(self._loop)  # a pipelining client must not starve the others

    def refuse_input(self, line: bytes) -> None:
        """The server drops this connection's unfinished request (server/_held.py): 408
        past --request-timeout, 503 over --max-partial-input; then the close."""
        if self._closing or not self._in_request or self._pipeline is None:
            return
        self._drop_request()
        text = line.decode().removeprefix("-ERR ").rstrip()
        if line == REQUEST_TIMEOUT_LINE:
            resp = simple_error(408, ErrorCode.PROTOCOL_ERROR, text)
        else:
            resp = simple_error(503, ErrorCode.BUSY, text)
        self._reject(resp)

    def eof_received(self) -> bool | None:
        # A half-closed client still gets its pending replies; close once they are out.
        self._closing = self._peer_eof = True
        self._disarm()
        if self._pipeline is None or self.transport is None:
            return None
        self._flush_output()
        if self.transport.is_closing() or self._linger_timer is not None:
            return None  # nothing left to send (lingering: the EOF it waited for)
        return True

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        refusal = self._parse_refusal(exc)
        self._reject(refusal.response, refusal.label)

    # ---- what the parser tells (server/_http_parse.py) ----

    def _request_begun(self) -> None:
        self._in_request = True
        self._continue = False
        self._request_window = self._header_timeout
        self._arm(self._request_window, self._request_expired)

    def _head_done(self, expect: bool) -> None:
        if expect and not self._closing:
            # curl waits a second for this before sending a body over 1 MiB. It goes
            # out once every earlier reply has (_after_output), never before them.
            self._continue = True
            self._after_output()
        self._request_window = self._body_timeout
        self._arm(self._body_timeout, self._request_expired)

    def _body_progress(self) -> None:
        self._continue = False  # the body comes anyway (RFC 9110 10.1.1: may omit it)
        self._arm(self._body_timeout, self._request_expired)

    def _request_parsed(self, req: Request, t0: float) -> None:
        assert self._pipeline is not None
        self._in_request = self._continue = False
        self._disarm()
        if self._closing:
            return  # pipelined after a "Connection: close" request: not served
        if self._host.draining:
            req.keep_alive = False
        if not req.keep_alive:
            self._closing = True
        if self._waiting or self._pause & PAUSE_TRANSPORT:
            # the peer is not reading its replies: run this one once it does
            self._waiting.append(partial(self._serve, req, t0))
            self._set_pause(PAUSE_INFLIGHT, True)
            return
        self._serve(req, t0)

    def _serve(self, req: Request, t0: float) -> None:
        assert self._pipeline is not None
        keep_alive = req.keep_alive
        outcome = route(self._state, req)
        head = req.method == "HEAD"
        if isinstance(outcome, KvCall):
            if not self._kv:
                self._kv = True
                if self._host.writer_pressured:
                    self._set_pause(PAUSE_WRITER, True)
            call = outcome.request
            self._pipeline.request(call.method, call.params, self._render_kv, outcome.ctx, t0)
        else:
            label = route_label(req.path)
            self._pipeline.request_done(
                self._render_fixed,
                (outcome, keep_alive, head, req.http10),
                None,
                outcome.error,
                label,
            )
        out = self._pipeline.take_output()
        if out:  # at once: a full buffer pauses us (pause_writing) before the next one
            self._write(out)
        if self._pipeline.pending >= MAX_HTTP_INFLIGHT:
            self._set_pause(PAUSE_INFLIGHT, True)

    # ---- rendering (called by the Pipeline, in request order) ----

    def _render_kv(self, ctx: KvContext, result: Any, error: ErrorInfo | None) -> bytes:
        resp = render_kv(ctx, result, error)
        head = ctx.verb == "HEAD"
        return self._count(resp, response(resp, ctx.keep_alive, head, ctx.http10))

    def _render_fixed(
        self, ctx: tuple[Response, bool, bool, bool], result: Any, error: Any
    ) -> bytes:
        resp, keep_alive, head, http10 = ctx
        return self._count(resp, response(resp, keep_alive, head, http10))

    def _count(self, resp: Response, data: bytes) -> bytes:
        statuses = self._state.metrics.http_requests
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        return data

    # ---- output, timers, flow control ----

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _flush_output(self) -> None:
        assert self._pipeline is not None
        out = self._pipeline.take_output()
        if out:
            self._write(out)
        self._after_output()

    def _progress(self) -> None:
        assert self._pipeline is not None
        if (
            self._pause & PAUSE_INFLIGHT
            and self._pipeline.pending <= MAX_HTTP_INFLIGHT // 2
            and not self._waiting
        ):
            self._set_pause(PAUSE_INFLIGHT, False)
        self._after_output()

    def _after_output(self) -> None:
        assert self._pipeline is not None and self.transport is not None
        if self._continue and not self._pipeline.busy and not self._waiting:
            self._continue = False
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._pipeline.pending or self._waiting:
            return
        if self._closing:
            self._linger()
        elif not self._in_request:
            self._arm(self._keepalive, self._idle_expired)

    def _reject(self, resp: Response, label: str = "http_error") -> None:
        """Answer a request we refuse to parse further, then close."""
        assert self._pipeline is not None
        self._closing = True
        self._continue = False
        self._disarm()
        head = self._in_request and self._head  # a HEAD reply never has a body
        if self._waiting:  # answered after the requests parsed before it
            self._waiting.append(partial(self._answer_reject, resp, label, head))
            return
        self._answer_reject(resp, label, head)

    def _answer_reject(self, resp: Response, label: str, head: bool) -> None:
        assert self._pipeline is not None
        self._pipeline.request_done(
            self._render_fixed, (resp, False, head, False), None, resp.error, label
        )
        self._flush_output()

    def _linger(self) -> None:
        self._disarm()
        self._linger_close(self._loop)

    def _arm(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback) if delay > 0 else None

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def resume_writing(self) -> None:
        super().resume_writing()
        waiting = self._waiting
        while waiting and not self._pause & PAUSE_TRANSPORT:
            waiting.popleft()()
        if self._pipeline is not None and self.transport is not None:
            self._flush_output()  # and maybe resume reading, or close
            self._progress()

    def _idle_expired(self) -> None:
        self._timer = None
        if self._pause & ~PAUSE_TRANSPORT:
            # not reading (the writer's pressure, ...): a request may be waiting unread
            self._arm(self._keepalive, self._idle_expired)
            return
        if (
            self.transport is not None
            and self._pipeline is not None
            and not self._pipeline.pending
            and not self._waiting
        ):
            self._closing = True
            self.transport.close()

    def _request_expired(self) -> None:
        self._timer = None
        if self._pause & ~PAUSE_TRANSPORT and not self._closing:
            # we stopped reading (the writer's pressure, ...), not the client its sending
            self._arm(self._request_window, self._request_expired)
            return
        if self._in_request and not self._closing:
            self._reject(
                simple_error(408, ErrorCode.PROTOCOL_ERROR, "request not received in time")
            )

    # ---- called by the Server ----

    def pause_for_writer(self, on: bool) -> None:
        if self._kv or not on:
            self._set_pause(PAUSE_WRITER, on)
        if not on and self._timer is not None:
            # what arrived while paused is read now: a fresh period, not the rest
            if self._in_request:
                self._arm(self._request_window, self._request_expired)
            else:
                self._arm(self._keepalive, self._idle_expired)

    @property
    def pending(self) -> int:
        return 0 if self._pipeline is None else self._pipeline.pending

    @property
    def busy(self) -> int:
        """Requests received and not answered yet (unsent replies included)."""
        unflushed = self._pipeline is not None and self._pipeline.unflushed
        return self.pending + len(self._waiting) + unflushed

    def stop_reading_for_shutdown(self) -> None:
        """Read nothing more (pipelined requests already parsed are still answered)."""
        self._set_pause(PAUSE_SHUTDOWN, True)

    def close_for_shutdown(self) -> None:
        self._closing = True
        self._waiting.clear()  # parsed, never started: cut by the close
        if self._pipeline is not None and self._pipeline.unflushed:
            self._write(self._pipeline.take_output())
        if self.transport is not None and not self._in_request:
            self.transport.close()
        elif self.transport is not None:
            resp = error_response(
                ErrorInfo(int(ErrorCode.SHUTTING_DOWN), "SHUTTING_DOWN", "shutting down")
            )
            self._reject(resp)
