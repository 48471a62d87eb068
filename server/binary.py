"""The binary/inline port: one asyncio.Protocol per connection.

Strategy / invariants:
- The first byte decides the dialect for the life of the connection: below 0x20 it is
  a binary frame (frames are < 512 MiB, so their first length byte is < 0x20);
  printable ASCII starts inline text mode (nc/telnet); anything else is garbage. An
  inline connection whose first line looks like an HTTP request line gets
  protocol.http_refusal(http_port) and is closed.
- Every decoded request goes through this connection's Pipeline (ordering and
  read-your-writes live there). All replies produced while handling one chunk of input
  leave in one transport.write.
- Back-pressure without errors: requests are handled while fewer than max_inflight are
  pending here and the writer queue is below its mark. Past that, the rest of the
  decoded chunk waits in `_backlog` (at most one read's worth), reading pauses, and
  the backlog is handled again as replies go out (`_progress`) or the writer catches up.
  Reading resumes once the backlog is empty and pending is at half. Pause reasons are
  bits (too much pending, writer queue, the transport's write buffer) so that one
  resume never cancels another reason.
- Fatal input (a frame over max_frame, malformed msgpack, a response instead of a
  request, an over-long inline line) is answered in order, after the requests decoded
  before it, with one error reply (binary: msgid 0), then the connection closes.
  Request-level errors (unknown method, bad params, oversize key, a malformed inline
  line) get an error reply and the connection stays.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

import msgpack

from protocol import (
    DEFAULT_MAX_FRAME,
    MAX_MSGID,
    TOO_MANY_CONNECTIONS_LINE,
    ErrorCode,
    ErrorInfo,
    FrameDecoder,
    InlineDecoder,
    ProtocolError,
    RemoteProtocolError,
    Request,
    encode_response,
    format_inline_error,
    format_inline_reply,
    http_refusal,
    inline_to_request,
    looks_like_http,
    message_from_obj,
)

from ._dispatch import error_info, make_error
from ._flow import PAUSE_INFLIGHT, PAUSE_SHUTDOWN, PAUSE_WRITER, ReadPause
from ._pipeline import Pipeline

if TYPE_CHECKING:
    from .app import Server

__all__ = ["BinaryProtocol", "render_binary", "render_inline"]

log = logging.getLogger("bitcask.server")

_SNIFF, _BINARY, _INLINE = 0, 1, 2
# Tab, LF and CR may start a text line. As the first byte of a frame header they would
# announce a frame of at least 150 MiB, which the configured max_frame (64 MiB by
# default) refuses anyway: then they mean text.
_TEXT_CONTROLS = frozenset(b"\t\n\r")
MAX_INLINE_LINE = 1024 * 1024  # an inline command (or HTTP request line) longer is garbage

# The binary Render. Success replies (nearly all of them) are packed here with one
# reused Packer (the msgid was range-checked on input, so encode_response's argument
# checks are redundant); errors, unencodable results and frames over the limit take
# encode_response itself, so the bytes and the LocalProtocolError are exactly its own.
# The Pipeline answers a reply that cannot be encoded with that error instead.
_packer = msgpack.Packer(use_bin_type=True)  # the loop thread only; pack() never re-enters
_pack = _packer.pack
_header = struct.Struct(">I").pack


def render_binary(msgid: int, result: Any, error: ErrorInfo | None) -> bytes:
    if error is None:
        try:
            body: bytes = _pack([1, msgid, None, result])
        except Exception:
            return encode_response(msgid, result, None)  # raises LocalProtocolError
        if len(body) <= DEFAULT_MAX_FRAME:
            return _header(len(body)) + body
    return encode_response(msgid, result, error)


def render_inline(method: str, result: Any, error: ErrorInfo | None) -> bytes:
    if error is not None:
        return format_inline_error(error)
    return format_inline_reply(method, result)


def _no_get(key: bytes) -> bytes | None:
    raise RuntimeError("connection not admitted")


class _Fatal:
    """A backlog marker: answer `error`, then close (the stream cannot be trusted)."""

    __slots__ = ("error",)

    def __init__(self, error: ErrorInfo) -> None:
        self.error = error


class BinaryProtocol(ReadPause, asyncio.Protocol):
    """One client connection on the binary port (binary frames or inline text)."""

    def __init__(self, server: Server) -> None:
        # -- server state --
        self._server = server
        self._config = server.config
        # -- connection --
        self.transport: asyncio.Transport | None = None
        self._mode = _SNIFF
        self._decoder: FrameDecoder | None = None
        self._inline: InlineDecoder | None = None
        self._head: bytes | None = b""  # inline: bytes before the first line end (HTTP sniffing)
        self._pipeline: Pipeline | None = None
        self._db_get: Callable[[bytes], bytes | None] = _no_get
        self._max_key = 0
        self._closing = False  # no more input is read; close once replies are out
        self._stopped = False  # QUIT or fatal input handled: drop what follows
        # -- flow control --
        self._backlog: deque[tuple[Any, float]] = deque()  # decoded, not yet handled
        self._pause = 0  # why reading is paused: PAUSE_* bits (server/_flow.py)
        self._high = server.config.max_inflight
        self._low = max(1, self._high // 2)
        # -- idle timeout (checked by the server's sweeper) --
        self.active = True
        self.last_active = 0.0

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        if not self._server.admit(self):
            # At once, in a line both dialects read (protocol/refusals.py).
            transport.write(TOO_MANY_CONNECTIONS_LINE)
            transport.close()
            self._closing = True
            return
        self.last_active = self._server.loop.time()
        dispatcher = self._server.dispatcher
        self._db_get, self._max_key = dispatcher.db_get, dispatcher.max_key
        self._pipeline = Pipeline(
            self._server.dispatcher,
            self._server.dispatcher.new_session(),
            self._server.metrics,
            self._write,
            self._progress,
        )
        if self._server.writer_pressured:
            self.pause_for_writer(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._backlog.clear()
        if self._pipeline is not None:
            self._pipeline.closed = True
            self._server.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._pipeline is None:
            return
        self.active = True
        if self._mode == _BINARY:
            self._binary(data)
        elif self._mode == _INLINE:
            self._inline_text(data)
        else:
            self._sniff(data)

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

    # ---- dialects ----

    def _sniff(self, data: bytes) -> None:
        first = data[0]
        if first < 0x20 and not (first in _TEXT_CONTROLS and first << 24 > self._config.max_frame):
            self._mode = _BINARY
            self._decoder = FrameDecoder(max_frame=self._config.max_frame)
            self._binary(data)
        elif first < 0x7F:
            self._mode = _INLINE
            self._inline = InlineDecoder(max_line=MAX_INLINE_LINE)
            self._inline_text(data)
        else:
            err = make_error(ErrorCode.PROTOCOL_ERROR, f"unexpected first byte 0x{first:02x}")
            self._fatal_now(encode_response(0, None, err))

    def _binary(self, data: bytes) -> None:
        assert self._decoder is not None
        t0 = perf_counter()
        try:
            objs: list[Any] = self._decoder.feed_raw(data)
        except RemoteProtocolError as exc:
            # Answer what was complete before the bad bytes, then the error, then close.
            objs = [*exc.messages, _Fatal(error_info(exc))]
            self._closing = True
        self._run(objs, t0)

    def _inline_text(self, data: bytes) -> None:
        assert self._inline is not None
        t0 = perf_counter()
        if self._head is not None:
            head = self._head + data
            end = head.find(b"\n")
            if end < 0:
                if len(head) > MAX_INLINE_LINE:
                    err = make_error(ErrorCode.PROTOCOL_ERROR, "line too long")
                    self._fatal_now(format_inline_error(err))
                else:
                    self._head = head
                return
            if looks_like_http(head[: end + 1]):
                self._fatal_now(http_refusal(self._server.http_port))
                return
            self._head = None
            data = head
        items: list[Any] = []
        while True:
            try:
                items.extend(self._inline.feed(data))
                break
            except RemoteProtocolError as exc:
                items.extend(exc.messages)
                if self._inline_dead():
                    items.append(_Fatal(error_info(exc)))
                    self._closing = True
                    break
                # A malformed line fails alone; the lines after it are still buffered.
                items.append(error_info(exc))
                data = b""
        self._run(items, t0)

    def _inline_dead(self) -> bool:
        # InlineDecoder dies only on an over-long line (then every feed raises again).
        assert self._inline is not None
        return self._inline.failed

    # ---- handling requests ----

    def _run(self, items: list[Any], t0: float) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        if self._backlog:
            self._backlog.extend((item, t0) for item in items)
            self._drain()
        elif self._mode == _BINARY:
            # The hot loop: valid requests go straight to the pipeline (the shape check
            # of protocol.message_from_obj, inline); anything else to _handle_frame.
            # A get with nothing pending on this connection (so no earlier write to
            # wait for) is answered right here: the checks of Dispatcher.call's get fast
            # path, the engine read, the reply appended to the pipeline's output in
            # order. Their latency is recorded once per chunk (one clock read).
            replies, server, high = pipeline.replies, self._server, self._high
            request, session, out = pipeline.request, pipeline.session, pipeline.out
            db_get, max_key = self._db_get, self._max_key
            quick = 0
            for i, obj in enumerate(items):
                if len(replies) >= high or server.writer_pressured:
                    self._backlog.extend((rest, t0) for rest in items[i:])
                    break
                if (
                    type(obj) is list
                    and len(obj) == 4
                    and obj[0] == 0
                    and type(obj[1]) is int
                    and 0 <= obj[1] <= MAX_MSGID
                    and type(obj[2]) is str
                    and type(obj[3]) is list
                ):
                    params = obj[3]
                    if (
                        obj[2] == "get"
                        and not replies
                        and len(params) == 1
                        and type(params[0]) is bytes
                        and len(params[0]) <= max_key
                        and session.authenticated
                    ):
                        try:
                            out.append(render_binary(obj[1], db_get(params[0]), None))
                            quick += 1
                            continue
                        except Exception:  # the pipeline runs it again and answers exactly
                            pass
                    request(obj[2], params, render_binary, obj[1], t0)
                else:
                    self._handle_frame(obj, t0)
                    if self._stopped:
                        break  # fatal: nothing that followed the bad frame runs
            if quick:
                server.metrics.requests_done("get", perf_counter() - t0, quick)
        else:
            for i, item in enumerate(items):
                if pipeline.pending >= self._high or self._server.writer_pressured:
                    self._backlog.extend((rest, t0) for rest in items[i:])
                    break
                self._handle_line(item, t0)
        self._after_input()

    def _drain(self) -> None:
        """Handle backlogged requests while limits allow."""
        pipeline = self._pipeline
        assert pipeline is not None
        backlog = self._backlog
        handle = self._handle_frame if self._mode == _BINARY else self._handle_line
        while (
            backlog
            and not self._stopped
            and pipeline.pending < self._high
            and not self._server.writer_pressured
        ):
            item, t0 = backlog.popleft()
            handle(item, t0)

    def _handle_frame(self, obj: Any, t0: float) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        # The valid-request check of protocol.message_from_obj, inline (hot path);
        # anything else goes through message_from_obj for the exact error.
        if (
            type(obj) is list
            and len(obj) == 4
            and obj[0] == 0
            and type(obj[1]) is int
            and 0 <= obj[1] <= MAX_MSGID
            and type(obj[2]) is str
            and type(obj[3]) is list
        ):
            pipeline.request(obj[2], obj[3], render_binary, obj[1], t0)
            return
        msgid = 0
        if type(obj) is _Fatal:
            error = obj.error
        else:
            try:
                msg = message_from_obj(obj)
            except RemoteProtocolError as exc:
                error = error_info(exc)
            else:
                if type(msg) is Request:
                    pipeline.request(msg.method, list(msg.params), render_binary, msg.msgid, t0)
                    return
                error = make_error(
                    ErrorCode.PROTOCOL_ERROR, "expected a request [0, msgid, method, params]"
                )
            # The error names the request it refuses when its msgid is readable.
            if type(obj) is list and len(obj) >= 2 and obj[0] == 0 and type(obj[1]) is int:
                msgid = obj[1] if 0 <= obj[1] <= MAX_MSGID else 0
        pipeline.request_done(render_binary, msgid, None, error, "protocol_error")
        self._stop_reading()

    def _handle_line(self, item: Any, t0: float) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        if self._stopped:
            return  # after QUIT or a fatal error nothing more is handled
        if type(item) is _Fatal:
            pipeline.request_done(render_inline, "-", None, item.error, "inline")
            self._stop_reading()
            return
        if type(item) is ErrorInfo:
            pipeline.request_done(render_inline, "-", None, item, "inline")
            return
        try:
            method, params = inline_to_request(item)
        except ProtocolError as exc:
            pipeline.request_done(render_inline, "-", None, error_info(exc), "inline")
            return
        if method == "quit":
            pipeline.request_done(render_inline, "quit", True, None, "quit")
            self._stop_reading()
            return
        pipeline.request(method, list(params), render_inline, method, t0)

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

    def _fatal_now(self, reply: bytes) -> None:
        assert self.transport is not None
        self._closing = True
        self.transport.write(reply)
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
