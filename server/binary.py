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
- Fatal input (a frame over max_frame, malformed msgpack, a response instead of a
  request, an over-long inline line) gets one error reply (binary: msgid 0) and a close;
  request-level errors (unknown method, bad params, oversize key) get an error reply
  and the connection stays.
- Reading pauses for any of three reasons, tracked as bits so that one resume never
  cancels another reason: too many requests pending here (resumes at half), the writer
  queue over its high-water mark, or the transport's own write buffer being full.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from protocol import (
    MAX_MSGID,
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
from ._pipeline import Pipeline

if TYPE_CHECKING:
    from .app import Server

__all__ = ["BinaryProtocol"]

log = logging.getLogger("bitcask.server")

_SNIFF, _BINARY, _INLINE = 0, 1, 2
_PAUSE_INFLIGHT, _PAUSE_WRITER, _PAUSE_TRANSPORT = 1, 2, 4
MAX_INLINE_LINE = 1024 * 1024  # an HTTP request line or inline command longer than this is garbage


# encode_response(msgid, result, error) is a Render as it is; the Pipeline answers a
# reply that cannot be encoded (too large a frame) with the encoding error instead.
render_binary = encode_response


def _shape_error(obj: Any) -> RemoteProtocolError | None:
    try:
        message_from_obj(obj)
    except RemoteProtocolError as exc:
        return exc
    return None


def render_inline(method: str, result: Any, error: ErrorInfo | None) -> bytes:
    if error is not None:
        return format_inline_error(error)
    return format_inline_reply(method, result)


class BinaryProtocol(asyncio.Protocol):
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
        self._closing = False
        # -- flow control --
        self._pause = 0
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
            err = make_error(ErrorCode.TOO_MANY_CONNECTIONS, "too many connections; retry later")
            transport.write(encode_response(0, None, err))
            transport.close()
            self._closing = True
            return
        self.last_active = self._server.loop.time()
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
        if self._pipeline is not None:
            self._pipeline.closed = True
            self._server.release(self)

    def pause_writing(self) -> None:
        self._set_pause(_PAUSE_TRANSPORT, True)

    def resume_writing(self) -> None:
        self._set_pause(_PAUSE_TRANSPORT, False)

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
        if self._pipeline is None or self._pipeline.pending == 0:
            return None
        self._closing = True
        return True

    # ---- dialects ----

    def _sniff(self, data: bytes) -> None:
        first = data[0]
        if first < 0x20:
            self._mode = _BINARY
            self._decoder = FrameDecoder(max_frame=self._config.max_frame)
            self._binary(data)
        elif first < 0x7F:
            self._mode = _INLINE
            self._inline = InlineDecoder(max_line=MAX_INLINE_LINE)
            self._inline_text(data)
        else:
            err = make_error(ErrorCode.PROTOCOL_ERROR, f"unexpected first byte 0x{first:02x}")
            self._fatal(encode_response(0, None, err))

    def _binary(self, data: bytes) -> None:
        assert self._decoder is not None and self._pipeline is not None
        t0 = perf_counter()
        fatal: ProtocolError | None = None
        try:
            objs = self._decoder.feed_raw(data)
        except RemoteProtocolError as exc:
            # Answer what was complete before the bad bytes, then the error, then close.
            objs, fatal = exc.messages, exc
        request = self._pipeline.request
        for obj in objs:
            # The shape check of protocol.message_from_obj for the valid case, inline;
            # anything else goes through it for the exact error.
            if (
                type(obj) is list
                and len(obj) == 4
                and obj[0] == 0
                and type(obj[1]) is int
                and 0 <= obj[1] <= MAX_MSGID
                and type(obj[2]) is str
                and type(obj[3]) is list
            ):
                request(obj[2], obj[3], render_binary, obj[1], t0)
                continue
            fatal = _shape_error(obj)
            if fatal is None:
                msg = message_from_obj(obj)
                if type(msg) is Request:
                    request(msg.method, list(msg.params), render_binary, msg.msgid, t0)
                    continue
                fatal = RemoteProtocolError("expected a request [0, msgid, method, params]")
            break
        if fatal is not None:
            self._pipeline.request_done(render_binary, 0, None, error_info(fatal), "protocol_error")
            self._closing = True
        self._after_input()

    def _inline_text(self, data: bytes) -> None:
        assert self._inline is not None and self._pipeline is not None
        if self._head is not None:
            head = self._head + data
            end = head.find(b"\n")
            if end < 0:
                if len(head) > MAX_INLINE_LINE:
                    err = make_error(ErrorCode.PROTOCOL_ERROR, "line too long")
                    self._fatal(format_inline_error(err))
                else:
                    self._head = head
                return
            if looks_like_http(head[: end + 1]):
                self._fatal(http_refusal(self._server.http_port))
                return
            self._head = None
            data = head
        pipeline = self._pipeline
        while True:
            try:
                lines, bad = self._inline.feed(data), None
            except RemoteProtocolError as exc:
                lines, bad = exc.messages, exc
            data = b""
            self._inline_commands(lines)
            if bad is None or self._closing:
                break
            pipeline.request_done(render_inline, "-", None, error_info(bad), "inline")
            if self._inline_dead():
                self._closing = True
                break
            # A malformed line fails alone; the lines after it are still buffered.
        self._after_input()

    def _inline_dead(self) -> bool:
        # InlineDecoder dies only on an over-long line; it has no public `failed` flag
        # (FrameDecoder has one), so look at the state it documents as terminal.
        assert self._inline is not None
        return getattr(self._inline, "_error", None) is not None

    def _inline_commands(self, lines: list[list[bytes]]) -> None:
        t0 = perf_counter()
        pipeline = self._pipeline
        assert pipeline is not None
        for argv in lines:
            if self._closing:
                return
            try:
                method, params = inline_to_request(argv)
            except ProtocolError as exc:
                pipeline.request_done(render_inline, "-", None, error_info(exc), "inline")
                continue
            if method == "quit":
                pipeline.request_done(render_inline, "quit", True, None, "quit")
                self._closing = True
                return
            pipeline.request(method, list(params), render_inline, method, t0)

    # ---- output and flow control ----

    def _after_input(self) -> None:
        assert self._pipeline is not None and self.transport is not None
        out = self._pipeline.take_output()
        if out:
            self.transport.write(out)
        if self._closing:
            self._close_when_done()
        elif self._pipeline.pending >= self._high:
            self._set_pause(_PAUSE_INFLIGHT, True)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _progress(self) -> None:
        assert self._pipeline is not None
        if self._pause & _PAUSE_INFLIGHT and self._pipeline.pending <= self._low:
            self._set_pause(_PAUSE_INFLIGHT, False)
        if self._closing:
            self._close_when_done()

    def _close_when_done(self) -> None:
        if (
            self._pipeline is not None
            and self._pipeline.pending == 0
            and self.transport is not None
        ):
            self.transport.close()

    def _fatal(self, reply: bytes) -> None:
        assert self.transport is not None
        self._closing = True
        self.transport.write(reply)
        self.transport.close()

    def _set_pause(self, bit: int, on: bool) -> None:
        before = self._pause
        self._pause = before | bit if on else before & ~bit
        if self.transport is None or self.transport.is_closing():
            return
        if before and not self._pause:
            self.transport.resume_reading()
        elif not before and self._pause:
            self.transport.pause_reading()

    # ---- called by the Server ----

    def pause_for_writer(self, on: bool) -> None:
        self._set_pause(_PAUSE_WRITER, on)

    @property
    def pending(self) -> int:
        return 0 if self._pipeline is None else self._pipeline.pending

    def close_idle(self) -> None:
        """The idle timeout expired: close without a reply."""
        if self.transport is not None:
            self._closing = True
            self.transport.close()

    def close_for_shutdown(self) -> None:
        """Close once every pending reply is out (called after in-flight work drained)."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()
