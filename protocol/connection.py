"""The server side of one connection, sans-IO (the h11 model): bytes in, events out.

Strategy / invariants:
- `Connection.receive_data(bytes)` takes whatever the socket delivered;
  `next_event()` (or `events()`, all at once) hands out what it means, in order;
  `send(request, result, error)` turns a result into the bytes of the reply, in the
  connection's dialect. No sockets, no clocks, no asyncio: every rule about what
  the bytes mean lives here, and the server only runs requests and moves bytes.
- The first byte picks the dialect for the life of the connection (`sniff`):
  below 0x20 a binary frame, except that tab, LF and CR are text when a frame
  starting with them could not fit the configured max_frame; printable ASCII is
  text; anything else is a fatal error. A dialect is one implementation of the
  `Dialect` interface: `BinaryDialect` (length-prefixed msgpack) and, for text,
  `RespDialect` (protocol/resp_dialect.py): the Redis protocol, multibulk and
  inline commands, which also refuses an HTTP request line.
- Events: `Request` (protocol.messages; run it, answer with `send`), `Reject` (a
  request refused while parsing: send its bytes, the connection goes on; part of
  the interface for any dialect, though neither of today's two produces one) and
  `Close` (terminal: send its bytes, then close the connection). Every request-shape
  rule is applied here, once: a frame that is not `[0, msgid, method, params]` is a
  fatal `Close`; params are checked later by `validate_params`.
- Fatal state: after a `Close` the connection yields nothing more, whatever
  arrives, so nothing that followed the bad bytes runs. The requests decoded
  before it are still handed out first. A fatal error carries the offending
  request's msgid when it can be read, msgid 0 when it cannot.
- Nothing escapes: any input gives events, never an exception (Hypothesis checks).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgpack

from protocol._events import Close, Event, Reject
from protocol._framing import (
    DEFAULT_MAX_FRAME,
    PACKER_KEEP,
    FrameDecoder,
    encode_response,
    reply_limit,
)
from protocol.errors import ErrorCode, RemoteProtocolError
from protocol.messages import MAX_MSGID, ErrorInfo, Request, message_from_obj, requests_from_objs

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "UNAUTH_MAX_FRAME",
    "BinaryDialect",
    "Close",
    "Connection",
    "Dialect",
    "Event",
    "Reject",
    "readable_msgid",
]


# The largest binary frame before authentication: the size of Redis's largest
# pre-AUTH bulk string (a hello or auth frame is well under 1 KiB).
UNAUTH_MAX_FRAME: Final = 16384


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""next_event(): nothing complete yet; call receive_data with more bytes."""
CLOSED: Final = _Sentinel("CLOSED")
"""next_event(): the connection ended (a Close was handed out); nothing will follow."""


class Dialect(Protocol):
    """What one wire dialect must provide (binary frames, text lines, later RESP)."""

    name: str

    def feed(self, data: bytes) -> list[Event]:
        """The events `data` completes, in order; a `Close` is always the last one.

        Must never raise, and must return nothing once it returned a `Close`.
        """
        ...

    def render(self, request: Request, result: Any, error: ErrorInfo | None) -> bytes:
        """The reply to `request`. May raise LocalProtocolError (e.g. over the frame
        limit); the caller then renders the error instead."""
        ...

    def set_authenticated(self, on: bool) -> None:
        """Lift (True) or apply (False) the dialect's pre-AUTH limits for the bytes
        fed next (a dialect without such limits does nothing)."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held for a request not complete yet (a partial frame or command)."""
        ...

    def discard_input(self) -> None:
        """The peer is gone: drop every byte held for a request not complete yet and
        read nothing more (`feed` returns nothing); `render` still works."""
        ...


def readable_msgid(obj: Any) -> int:
    """The msgid of a decoded frame that failed the request-shape check, or 0.

    Readable means: an array whose first element is the int 0 (it claims to be a
    request) and whose second is a uint32.

    Example:
        >>> readable_msgid([0, 7, "ping", {}]), readable_msgid([1, 7, None, True])
        (7, 0)
    """
    if type(obj) is list and len(obj) >= 2 and type(obj[0]) is int and obj[0] == 0:
        msgid = obj[1]
        if type(msgid) is int and 0 <= msgid <= MAX_MSGID:
            return msgid
    return 0


# ---------------------------------------------------------------- binary frames

# Success replies (nearly all) are packed with one reused Packer: the msgid came from
# a checked request, so encode_response's argument checks are redundant. Errors,
# unencodable results and replies over the limit take encode_response itself, so
# the bytes and the LocalProtocolError are exactly its own. Replies may be as large
# as reply_limit(max_frame): DEFAULT_MAX_FRAME, or the server's max_frame above it.
# One thread only; pack() never re-enters. Replaced after a reply over PACKER_KEEP,
# whose buffer it would keep: one 64 MiB get left the server 64 MiB of anonymous
# memory larger for good (smaps Pss_Anon 20 -> 84 MiB).
_pack = msgpack.Packer(use_bin_type=True).pack


def _renew_packer() -> None:
    global _pack
    _pack = msgpack.Packer(use_bin_type=True).pack


_header = struct.Struct(">I").pack

# Prebuilt success replies whose result is True, False or nil (every put, a get miss,
# delete, exists): the frame [1, msgid, nil, result] written byte by byte, the msgid
# in msgpack's smallest int form, as the Packer writes it (tests/protocol/
# test_connection.py compares them for every msgid width). They skip building a list
# and packing it: on the put rows of bench/server.py render went from ~0.70 to ~0.30
# us per reply (timeit on the loaded bench machine, msgid 1).
_SCALAR_TAIL = {True: 0xC3, False: 0xC2, None: 0xC0}
# By result, for msgids below 128 (what every client sends first): `render` picks the
# frame itself, without a call to _scalar_reply: a Python call less per put reply
# (bench.request_path --callgrind, put depth 16: see docs/architecture.md).
_SMALL_REPLIES = {
    result: [struct.pack(">IBBBBB", 5, 0x94, 1, msgid, 0xC0, tail) for msgid in range(128)]
    for result, tail in _SCALAR_TAIL.items()
}
_reply_u8 = struct.Struct(">IBBBBBB").pack
_reply_u16 = struct.Struct(">IBBBHBB").pack
_reply_u32 = struct.Struct(">IBBBIBB").pack


def _scalar_reply(msgid: int, tail: int) -> bytes:
    """The frame of a success reply whose result is True/False/nil (tail: its byte),
    for a msgid of 128 or more (below it, `_SMALL_REPLIES`)."""
    if msgid < 0x100:
        return _reply_u8(6, 0x94, 1, 0xCC, msgid, 0xC0, tail)
    if msgid < 0x10000:
        return _reply_u16(7, 0x94, 1, 0xCD, msgid, 0xC0, tail)
    return _reply_u32(9, 0x94, 1, 0xCE, msgid, 0xC0, tail)


class BinaryDialect:
    """Length-prefixed msgpack frames (docs/protocol.md sections 1-2)."""

    name = "binary"
    __slots__ = ("_decoder", "_ended", "_feed_raw", "_max_frame", "_max_reply")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._feed_raw = self._decoder.feed_raw
        self._max_frame = max_frame
        self._max_reply = reply_limit(max_frame)
        self._ended = False

    def set_authenticated(self, on: bool) -> None:
        """Before authentication a frame may hold at most UNAUTH_MAX_FRAME bytes."""
        self._decoder.max_frame = self._max_frame if on else min(self._max_frame, UNAUTH_MAX_FRAME)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not complete yet."""
        return self._decoder.buffered

    def discard_input(self) -> None:
        self._ended = True
        self._decoder = FrameDecoder(max_frame=self._max_frame)  # the old one's buffer goes
        self._feed_raw = self._decoder.feed_raw

    def feed(self, data: bytes) -> list[Event]:
        if self._ended:
            return []
        fatal: ErrorInfo | None = None
        try:
            objs: list[Any] = self._feed_raw(data)
        except RemoteProtocolError as exc:
            objs = exc.messages
            fatal = ErrorInfo.from_code(exc.code, exc.message)
        # The request-shape rule for the whole chunk in one call (messages.py).
        events: list[Event] = requests_from_objs(objs)
        if len(events) < len(objs):
            bad = objs[len(events)]
            try:
                message_from_obj(bad)  # says why it is not a message
            except RemoteProtocolError as exc:
                error = ErrorInfo.from_code(exc.code, exc.message)
            else:  # a well-formed response
                error = ErrorInfo.from_code(
                    ErrorCode.PROTOCOL_ERROR, "expected a request [0, msgid, method, params]"
                )
            return self._end(events, error, bad)
        if fatal is not None:
            return self._end(events, fatal, None)
        return events

    def _end(self, events: list[Event], error: ErrorInfo, obj: Any) -> list[Event]:
        self._ended = True
        events.append(Close(error, encode_response(readable_msgid(obj), None, error)))
        return events

    def render(self, request: Request, result: Any, error: ErrorInfo | None) -> bytes:
        msgid = request.msgid
        if error is None:
            if result is True or result is None or result is False:
                if msgid < 128:
                    return _SMALL_REPLIES[result][msgid]
                return _scalar_reply(msgid, _SCALAR_TAIL[result])
            try:
                body: bytes = _pack([1, msgid, None, result])
            except Exception:
                return encode_response(msgid, result, None)  # raises LocalProtocolError
            n = len(body)
            if n <= PACKER_KEEP:
                return _header(n) + body
            _renew_packer()
            if n <= self._max_reply:
                return _header(n) + body
        return encode_response(msgid, result, error, max_frame=self._max_reply)


# ---------------------------------------------------------------- the connection

Render = Callable[[Request, Any, ErrorInfo | None], bytes]


def _no_render(request: Request, result: Any, error: ErrorInfo | None) -> bytes:
    raise RuntimeError("send() before any request was received")


_TEXT_CONTROLS = frozenset(b"\t\n\r")


def _resp(max_frame: int, http_port: int | None) -> Dialect:
    # Imported at the first text connection, as the server's Redis dispatcher is built
    # then: the dialect, its reader, writer and command table were ~28M instructions,
    # 6% of a bitcask-server start (callgrind), spent even if no client spoke RESP.
    # Later connections pay one sys.modules lookup.
    from protocol.resp_dialect import RespDialect

    return RespDialect(max_bulk=max_frame, http_port=http_port)


class Connection:
    """One server-side connection: dialect sniffing, events, replies, fatal state.

    Args:
        max_frame: the largest request frame accepted (binary dialect), and the
            largest bulk string of a Redis request.
        http_port: named in the refusal sent to an HTTP client on this port.
        text: builds the dialect of a connection that starts with text, as
            text(max_frame, http_port); the Redis protocol (RespDialect) by
            default. Another text dialect plugs in here, without a branch in this
            class.

    Example:
        >>> conn = Connection()
        >>> conn.receive_data(b'SET k "a b"\\r\\n*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n')
        >>> [(e.method, e.params) for e in conn.events()]
        [('set', [b'SET', b'k', b'a b']), ('get', [b'GET', b'k'])]
        >>> conn.dialect.name
        'resp'
    """

    __slots__ = (
        "_events",
        "_next",
        "_text",
        "auth_required",
        "dialect",
        "ended",
        "http_port",
        "max_frame",
        "render",
    )

    def __init__(
        self,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        http_port: int | None = None,
        text: Callable[[int, int | None], Dialect] = _resp,
        auth_required: bool = False,
    ) -> None:
        self._text = text
        # Redis's pre-AUTH limits, on both dialects, until set_authenticated(True)
        self.auth_required = auth_required
        self.max_frame = max_frame
        self.http_port = http_port
        self.dialect: Dialect | None = None
        # The dialect's render, once known: what `send` calls (hot paths may call it
        # directly and save a call per reply).
        self.render: Render = _no_render
        self._events: list[Event] = []  # produced and not handed out; from _next on
        self._next = 0
        # True once a terminal `Close` was produced (it may not be handed out yet);
        # read-only for callers. An attribute, not a property: the server reads it
        # once per data_received.
        self.ended = False

    def discard_input(self) -> None:
        """The peer is gone: drop the input held for requests not complete or not
        handed out yet, and read nothing more. A request arriving slowly holds up to
        max_frame bytes here, and the server frees a closed connection's objects
        only at a rare full garbage collection (they form reference cycles): 8
        connections closed with 60 MiB of a SET each kept the server at 514 MB."""
        self.ended = True
        self._events = []
        self._next = 0
        if self.dialect is not None:
            self.dialect.discard_input()

    @property
    def buffered(self) -> int:
        """Bytes held for requests not complete yet (the server's partial-input budget,
        server/_held.py); 0 before the dialect is known. The server asks after every
        chunk: it must see a request begun behind complete ones."""
        dialect = self.dialect
        return 0 if dialect is None else dialect.buffered

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes from the peer (any split). Ignored after a Close."""
        if self.ended or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        dialect = self.dialect
        if dialect is None:
            dialect = self.dialect = self._sniff(data[0])
            if dialect is not None:
                self.render = dialect.render
            else:
                error = ErrorInfo.from_code(
                    ErrorCode.PROTOCOL_ERROR, f"unexpected first byte 0x{data[0]:02x}"
                )
                self._push([Close(error, encode_response(0, None, error))])
                return
        self._push(dialect.feed(data))

    def receive(self, data: bytes) -> list[Event]:
        """`receive_data(data)` then `events()`, in one call: the server's hot path.

        Once the dialect is known and every earlier event was handed out, the
        dialect's events are returned as they are: per read it saves two calls and a
        list (the depth-1 rows of bench/server.py: one read per request; callgrind
        figures: docs/architecture.md, Per-request cost). Otherwise it is exactly the two
        calls it replaces (tests/protocol/test_connection.py compares them).
        """
        dialect = self.dialect
        if (
            dialect is not None
            and data
            and not self.ended
            and not self._events
            and type(data) is bytes
        ):
            events = dialect.feed(data)
            if events and type(events[-1]) is Close:
                self.ended = True
            return events
        self.receive_data(data)
        return self.events()

    def _sniff(self, first: int) -> Dialect | None:
        dialect: Dialect
        if first < 0x20 and not (first in _TEXT_CONTROLS and first << 24 > self.max_frame):
            dialect = BinaryDialect(self.max_frame)
        elif first < 0x7F:
            dialect = self._text(self.max_frame, self.http_port)
        else:
            return None
        if self.auth_required:
            dialect.set_authenticated(False)
        return dialect

    def set_authenticated(self, on: bool) -> None:
        """Lift (True) or apply again (False: RESET) the pre-AUTH limits for the bytes
        received next; a no-op unless ``auth_required``. Before authentication a RESP
        request has at most 10 arguments of at most 16,384 bytes (Redis's rule) and a
        binary frame at most UNAUTH_MAX_FRAME bytes."""
        if self.auth_required and self.dialect is not None:
            self.dialect.set_authenticated(on)

    def resume(self) -> list[Event]:
        """The events of bytes already received that the dialect held back (before
        AUTH the Redis dialect reads one command at a time), read under the limits
        `set_authenticated` set since; [] when none."""
        if self.ended or self.dialect is None:
            return []
        self._push(self.dialect.feed(b""))
        return self.events()

    def _push(self, events: list[Event]) -> None:
        if events:
            if type(events[-1]) is Close:
                self.ended = True
            if self._next == len(self._events):
                self._events, self._next = events, 0
            else:
                self._events.extend(events)

    def next_event(self) -> Event | _Sentinel:
        """The next event, or NEED_DATA, or CLOSED once the terminal event was taken."""
        if self._next < len(self._events):
            event = self._events[self._next]
            self._next += 1
            return event
        return CLOSED if self.ended else NEED_DATA

    def events(self) -> list[Event]:
        """Every event available now, in order (the server's hot path)."""
        events = self._events if self._next == 0 else self._events[self._next :]
        self._events, self._next = [], 0
        return events

    def send(self, request: Request, result: Any, error: ErrorInfo | None) -> bytes:
        """The bytes of the reply to `request` in this connection's dialect.

        Raises:
            LocalProtocolError: the reply cannot be encoded or is over the frame
                limit (answer with that error instead).
        """
        return self.render(request, result, error)
